"""The FastAPI app: REST API under /v1, a web page at /, health at /health.

``create_app(models, index=None, db_url=None, api_key=None, limits=...)`` loads every model once, opens
the case store (creating its tables) and returns the app. Run it with uvicorn (``cxr serve`` does).
Bad input is always a 4xx whose JSON ``detail`` names the problem (and ``code`` a short name); nothing is
recorded for it. Logs carry analysis IDs, never patient identifiers or image bytes.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy.exc import SQLAlchemyError

import cxrkit
from cxrkit.core.errors import CxrkitError, UnknownNameError
from cxrkit.models.engine import InferenceOptions
from cxrkit.search import CaseIndex, describe_index, load_index
from cxrkit.serving.middleware import AccessLogMiddleware, BodyLimitMiddleware
from cxrkit.serving.predictor import Predictor
from cxrkit.serving.render import array_png, encode_map, overlay_png
from cxrkit.serving.state import ServedModel, ServerState, load_models, pick_index_model
from cxrkit.serving.store import CaseStore
from cxrkit.serving.timeline import build_patient_timeline, timeline_png
from cxrkit.serving.uploads import (
    DecodedUpload,
    ServerLimits,
    UploadError,
    clean_patient_id,
    decode_upload,
    parse_study_date,
    read_bounded,
)
from cxrkit.serving.webpage import INDEX_HTML

log = logging.getLogger("cxrkit.serving")

API_KEY_HEADER = "X-API-Key"
FORM_OVERHEAD = 1 << 20  # multipart framing and the small form fields around the file


def _error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail, "code": code}, status_code=status)


def create_app(
    models: Sequence[str | Path | Predictor] | Mapping[str, str | Path | Predictor],
    index: CaseIndex | str | Path | None = None,
    db_url: str | None = None,
    api_key: str | None = None,
    limits: ServerLimits | None = None,
    store: CaseStore | None = None,
    inference: InferenceOptions | None = None,
) -> FastAPI:
    """Build the app: models load once here (safetensors bundles), the case store's tables are created.

    Args:
        models: bundle names / folders / loaded Predictors, or ``{name: ...}``; the first is the default.
        index: a similar-case index (folder or loaded); its model is one of ``models`` with the same
            fingerprint, else the model recorded in the index.
        db_url: SQLAlchemy URL of the case store (default SQLite ``$CXRKIT_HOME/cases.db``).
        api_key: when set, every /v1 route needs it in the ``X-API-Key`` header (or ``Authorization: Bearer``).
        limits: upload and request limits (default ``ServerLimits.from_env()``: CXRKIT_MAX_UPLOAD_MB).
        store: an open ``CaseStore`` to use instead of ``db_url``.
        inference: backend (torch/onnx) and precision of every served model (default: torch, auto).

    Raises:
        BundleError, UnknownNameError: a model is missing or corrupt (the message says how to fix it).
        ConfigError: no models, or the case store / index cannot be opened.
    """
    limits = limits or ServerLimits.from_env()
    served = load_models(models, inference)
    idx = load_index(index) if isinstance(index, str | Path) else index
    index_model = pick_index_model(idx, served, inference) if idx is not None else None
    state = ServerState(
        models=served,
        index=idx,
        index_model=index_model,
        store=store or CaseStore(db_url),
        limits=limits,
        api_key=api_key or None,
    )
    app = FastAPI(
        title="cxrkit",
        version=cxrkit.__version__,
        description=(
            "Chest X-ray analysis: predictions, heatmaps, similar cases and patient timelines. "
            "Research use only, not a medical device."
        ),
    )
    app.state.cxr = state
    app.add_middleware(BodyLimitMiddleware, max_body=limits.max_upload_bytes + FORM_OVERHEAD)
    app.add_middleware(AccessLogMiddleware)

    @app.exception_handler(UploadError)
    async def _upload_error(_: Request, err: UploadError) -> JSONResponse:
        return _error(err.status, err.code, str(err))

    @app.exception_handler(UnknownNameError)
    async def _unknown_name(_: Request, err: UnknownNameError) -> JSONResponse:
        return _error(422, "unknown_name", str(err))

    @app.exception_handler(SQLAlchemyError)
    async def _store_error(_: Request, err: SQLAlchemyError) -> JSONResponse:
        log.error("case store error: %s", type(err).__name__)
        return _error(
            503, "store_unavailable", "The case store is unavailable; the analysis was not recorded. Retry later."
        )

    @app.exception_handler(CxrkitError)
    async def _cxrkit_error(_: Request, err: CxrkitError) -> JSONResponse:
        return _error(422, "invalid", str(err))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(INDEX_HTML)

    @app.get("/health", tags=["service"])
    def health() -> dict[str, Any]:
        """Liveness and what is served (no API key needed)."""
        ok = state.store.ping()
        return {
            "status": "ok" if ok else "degraded",
            "version": cxrkit.__version__,
            "models": list(state.models),
            "index": state.index is not None,
            "store": {"backend": state.store.backend, "ok": ok},
            "api_key_required": state.api_key is not None,
        }

    app.include_router(_v1_router(state), prefix="/v1")
    return app


def _api_key_dependency(state: ServerState) -> Any:
    def check(request: Request) -> None:
        if state.api_key is None:
            return
        given = request.headers.get(API_KEY_HEADER)
        auth = request.headers.get("Authorization", "")
        if given is None and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if not given or not secrets.compare_digest(given.encode(), state.api_key.encode()):
            raise UploadError(
                401, "unauthorized", f"A valid API key is required: send it in the {API_KEY_HEADER} header."
            )

    return check


# Form fields shared by the upload routes.
FileField = Annotated[UploadFile, File(description="PNG, JPEG or DICOM (sniffed from the content, not the name).")]
PatientField = Annotated[str | None, Form(description="Patient ID (else read from DICOM PatientID).")]
DateField = Annotated[str | None, Form(description="Study date yyyy-mm-dd (else DICOM StudyDate).")]
ModelField = Annotated[str | None, Form(description="Model name (GET /v1/models); default the first served.")]


def _v1_router(state: ServerState) -> APIRouter:
    router = APIRouter(dependencies=[Depends(_api_key_dependency(state))])

    def prepare(
        file: UploadFile, patient_id: str | None, study_date: str | None, model: str | None
    ) -> tuple[ServedModel, DecodedUpload, str | None, str | None, str | None]:
        served = state.model(model)
        pid = clean_patient_id(patient_id)
        date = parse_study_date(study_date)
        data = read_bounded(file.file, state.limits.max_upload_bytes)
        upload = decode_upload(data, state.limits)
        source = "form" if pid else None
        if upload.dicom_patient_id:
            dpid = clean_patient_id(upload.dicom_patient_id)
            if pid and dpid and pid != dpid:
                raise UploadError(
                    422,
                    "patient_conflict",
                    "The patient_id form field differs from the DICOM file's PatientID; send the right one, or "
                    "leave the field empty to use the DICOM tag.",
                )
            if not pid and dpid:
                pid, source = dpid, "dicom"
        if date is None and upload.dicom_study_date:
            date = upload.dicom_study_date
        return served, upload, pid, date, source

    def analysis(served: ServedModel, probs: np.ndarray, upload: DecodedUpload) -> dict[str, Any]:
        if not np.isfinite(probs).all():
            raise UploadError(422, "non_finite_output", "The model gave no finite probabilities for this image.")
        out = served.predictor.interpret(probs)
        return {
            "ranked": out["ranked"],
            "findings": out["findings"],
            "probabilities": out["probabilities"],
            "thresholds": served.predictor.bundle.thresholds,
            "default_threshold": served.default_threshold,
            "severity": served.severity(probs),
            "input": upload.describe(),
        }

    def respond(record: dict[str, Any], served: ServedModel, source: str | None, extra: dict | None = None) -> dict:
        outputs = record["outputs"]
        return {
            "analysis_id": record["analysis_id"],
            "created_at": record["created_at"],
            "model": served.info,
            "patient_id": record["patient_id"],
            "patient_id_source": source,
            "study_date": record["study_date"],
            **outputs,
            **(extra or {}),
        }

    @router.get("/models", tags=["models"])
    def list_models() -> dict[str, Any]:
        """The served models (name, version, sha256, classes, thresholds) and the index, if any."""
        return {
            "default": state.default_name,
            "models": [m.info for m in state.models.values()],
            "index": describe_index(state.index) if state.index is not None else None,
        }

    @router.post("/predict", tags=["analysis"])
    def predict(
        file: FileField,
        patient_id: PatientField = None,
        study_date: DateField = None,
        model: ModelField = None,
    ) -> dict[str, Any]:
        """Ranked probabilities and findings above threshold for one image; the analysis is recorded."""
        t0 = time.perf_counter()
        served, upload, pid, date, source = prepare(file, patient_id, study_date, model)
        outputs = analysis(served, served.predictor.probabilities([upload.image])[0], upload)
        rec = state.store.record(
            kind="predict", model=served.info, input_sha256=upload.sha256, outputs=outputs, patient_id=pid,
            study_date=date,
        )  # fmt: skip
        log.info(
            "analysis %s predict model=%s %.1fms", rec["analysis_id"], served.name, 1000 * (time.perf_counter() - t0)
        )
        return respond(rec, served, source)

    @router.post("/explain", tags=["analysis"])
    def explain(
        file: FileField,
        patient_id: PatientField = None,
        study_date: DateField = None,
        model: ModelField = None,
        method: Annotated[str, Form(description="CAM method: gradcam, gradcam++, hirescam, ...")] = "gradcam",
        target: Annotated[str | None, Form(description="Class to explain (default: the predicted one).")] = None,
        overlay: Annotated[str, Form(description="'base64' (in the JSON) or 'url' (fetch it once).")] = "base64",
        map_format: Annotated[
            str, Form(description="Raw map: 'list' (downsampled), 'npy' (base64 .npy), 'none'.")
        ] = "list",
        map_size: Annotated[int, Form(ge=4, le=512, description="Longest side of the 'list' map.")] = 64,
        include_image: Annotated[bool, Form(description="Also return the decoded image as a PNG (base64).")] = False,
    ) -> dict[str, Any]:
        """A heatmap of what drove the prediction: overlay PNG, raw map, boxes; plus the prediction. Recorded."""
        t0 = time.perf_counter()
        if overlay not in ("base64", "url"):
            raise UploadError(422, "bad_option", f"overlay must be 'base64' or 'url', got {overlay!r}.")
        if map_format not in ("list", "npy", "none"):
            raise UploadError(422, "bad_option", f"map_format must be 'list', 'npy' or 'none', got {map_format!r}.")
        served, upload, pid, date, source = prepare(file, patient_id, study_date, model)
        cam = served.predictor.explain(upload.image, method=method, target=target or None)
        classes = served.predictor.bundle.classes
        probs = np.array([cam.probabilities[c] for c in classes], dtype=np.float64)
        outputs = analysis(served, probs, upload)
        outputs["explanation"] = {
            "method": cam.method,
            "target": cam.target,
            "probability": cam.probability,
            "boxes": cam.boxes,
        }
        rec = state.store.record(
            kind="explain", model=served.info, input_sha256=upload.sha256, outputs=outputs, patient_id=pid,
            study_date=date,
        )  # fmt: skip
        png = overlay_png(upload.image, cam.cam, f"{cam.target} {cam.probability:.2f}")
        expl = dict(outputs["explanation"])
        if overlay == "url":
            state.overlays.put(rec["analysis_id"], png)
            expl["overlay_url"] = f"/v1/explain/{rec['analysis_id']}/overlay.png"
        else:
            expl["overlay_png_base64"] = png_b64(png)
        if map_format != "none":
            expl["map"] = encode_map(cam.cam, map_format, map_size)
        extra: dict[str, Any] = {"explanation": expl}
        if include_image:
            extra["image_png_base64"] = png_b64(array_png(upload.image))
        log.info(
            "analysis %s explain model=%s %.1fms", rec["analysis_id"], served.name, 1000 * (time.perf_counter() - t0)
        )
        return respond(rec, served, source, extra)

    @router.get("/explain/{analysis_id}/overlay.png", tags=["analysis"], response_class=Response)
    def explain_overlay(analysis_id: str) -> Response:
        """The overlay of a recent /v1/explain call made with overlay=url (kept in memory for a while)."""
        png = state.overlays.get(analysis_id)
        if png is None:
            raise UploadError(
                404, "not_found", "No overlay kept for this analysis (expired or never made); re-run /v1/explain."
            )
        return Response(png, media_type="image/png")

    @router.post("/similar", tags=["similar cases"])
    def similar(
        file: FileField,
        k: Annotated[int, Form(ge=1, description="How many similar cases.")] = 8,
    ) -> dict[str, Any]:
        """The k most similar indexed cases (labels, patient, similarity); needs a configured index."""
        if state.index is None or state.index_model is None:
            raise UploadError(
                404,
                "no_index",
                "No similar-case index is configured on this server. Build one with `cxr index build --model "
                "MODEL DATA --out INDEX_DIR` and start the server with `cxr serve --index INDEX_DIR`.",
            )
        if k > state.limits.max_k:
            raise UploadError(422, "bad_option", f"k must be at most {state.limits.max_k}, got {k}.")
        upload = decode_upload(read_bounded(file.file, state.limits.max_upload_bytes), state.limits)
        vec = state.index_model.predictor.embed([upload.image])
        sims, ids = state.index.search(vec, k)
        hits = []
        for rank, (s, i) in enumerate(zip(sims[0], ids[0], strict=True), start=1):
            if i < 0:
                continue
            hit = state.index.hit(int(i), float(s), rank)
            hit["file"] = Path(str(hit.pop("path") or "")).name
            hit["image_url"] = f"/v1/index/images/{int(i)}"
            hits.append(hit)
        return {
            "k": k,
            "model": state.index_model.info,
            "index": {"count": len(state.index), "classes": list(state.index.label_space.classes)},
            "input": upload.describe(),
            "neighbours": hits,
        }

    @router.get("/index/images/{row}", tags=["similar cases"], response_class=Response)
    def index_image(row: int, size: Annotated[int, Query(ge=16, le=1024)] = 256) -> Response:
        """A thumbnail (PNG) of the indexed image at ``row`` (only images in the index are served)."""
        if state.index is None:
            raise UploadError(404, "no_index", "No similar-case index is configured on this server.")
        if not 0 <= row < len(state.index):
            raise UploadError(404, "not_found", f"Row {row} is not in the index (it has {len(state.index)} rows).")
        png = state.thumbnail(row, size)
        if png is None:
            raise UploadError(
                404, "image_missing", f"The image of index row {row} can no longer be read on the server."
            )
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    @router.get("/patients/{patient_id}/timeline", tags=["patients"])
    def timeline(patient_id: str, model: Annotated[str | None, Query()] = None) -> dict[str, Any]:
        """The patient's recorded analyses by study date then time, severity per study, drift verdict."""
        return _timeline_or_404(patient_id, model)

    @router.get("/patients/{patient_id}/timeline.png", tags=["patients"], response_class=Response)
    def timeline_image(patient_id: str, model: Annotated[str | None, Query()] = None) -> Response:
        """The timeline as a PNG plot (severity against study date, verdict in the title)."""
        return Response(timeline_png(_timeline_or_404(patient_id, model)), media_type="image/png")

    def _timeline_or_404(patient_id: str, model: str | None) -> dict[str, Any]:
        pid = clean_patient_id(patient_id)
        rows = state.store.patient_analyses(pid or "", model) if pid else []
        if not rows:
            raise UploadError(
                404, "not_found", "No analyses are recorded for this patient" + (" with this model." if model else ".")
            )
        return build_patient_timeline(pid or "", rows, model)

    @router.get("/analyses/{analysis_id}", tags=["analysis"])
    def get_analysis(analysis_id: str) -> dict[str, Any]:
        """One recorded analysis: time, model, input SHA-256, patient, study date, outputs."""
        rec = state.store.get(analysis_id) if len(analysis_id) <= 64 else None
        if rec is None:
            raise UploadError(404, "not_found", f"No analysis with ID {analysis_id[:64]!r}.")
        return rec

    return router


def png_b64(png: bytes) -> str:
    import base64

    return base64.b64encode(png).decode("ascii")


__all__ = ["create_app"]

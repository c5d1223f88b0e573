"""POST /v1/predict and /v1/explain (recorded analyses), the explain overlay, GET /v1/analyses/{id}."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Form, Header
from fastapi.responses import Response

from cxrkit.serving.deps import DateField, FileField, ModelField, PatientField, StateDep, WorkSlot, Writer
from cxrkit.serving.errors import ApiError, NotFound
from cxrkit.serving.keys import Caller
from cxrkit.serving.render import array_png, encode_map, overlay_png
from cxrkit.serving.state import ServedModel, ServerState
from cxrkit.serving.store import IdempotencyConflict
from cxrkit.serving.uploads import (
    DecodedUpload,
    UploadError,
    clean_patient_id,
    decode_upload,
    parse_study_date,
    read_bounded,
)

log = logging.getLogger("cxrkit.serving")

router = APIRouter(tags=["analysis"])


def png_b64(png: bytes) -> str:
    return base64.b64encode(png).decode("ascii")


def prepare_upload(
    state: ServerState, file: Any, patient_id: str | None, study_date: str | None, model: str | None
) -> tuple[ServedModel, DecodedUpload, str | None, str | None, str | None]:
    """Resolve the model, check the form fields, read and decode the file; patient fields from DICOM.

    Returns (model, upload, patient_id, study_date, patient_id_source).
    """
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


def analysis_outputs(served: ServedModel, probs: np.ndarray, upload: DecodedUpload) -> dict[str, Any]:
    """What is stored and returned for one analysed image (ranked, findings, probabilities, severity...)."""
    if not np.isfinite(probs).all():
        raise ApiError(422, "non_finite_output", "The model gave no finite probabilities for this image.")
    out = served.predictor.interpret(probs)
    return {
        "ranked": out["ranked"],
        "findings": out["findings"],
        "probabilities": out["probabilities"],
        "thresholds": served.predictor.bundle.thresholds,
        "default_threshold": served.default_threshold,
        "severity": served.severity(probs),
        "input": upload.describe(),
        "warnings": served.predictor.input_warnings(upload.image),
    }


def respond(record: dict[str, Any], served: ServedModel, source: str | None, extra: dict | None = None) -> dict:
    """The JSON answer of a recorded analysis."""
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


IdemKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="Any unique string: a retried request with the same key returns the first response and "
        "records nothing new.",
    ),
]


def fingerprint(route: str, file: Any, **fields: Any) -> str:
    """SHA-256 of what a request asks for (route, file bytes, form fields): an Idempotency-Key's request."""
    h = hashlib.sha256(route.encode())
    file.file.seek(0)
    for chunk in iter(lambda: file.file.read(1 << 20), b""):
        h.update(chunk)
    file.file.seek(0)
    h.update(json.dumps(fields, sort_keys=True, default=str).encode())
    return h.hexdigest()


def replayed(state: ServerState, caller: Caller, key: str | None, request_sha: str, response: Response) -> dict | None:
    """The saved first response to this Idempotency-Key, or None when the key is new (or absent).

    Raises:
        ApiError: 422 when the key was used before for a different request.
    """
    if not key:
        return None
    try:
        first = state.store.replay(key, caller.principal, request_sha)
    except IdempotencyConflict:
        raise ApiError(
            422,
            "idempotency_key_reused",
            "This Idempotency-Key was used before for a different request; use a new key for a new request.",
        ) from None
    if first is not None:
        response.headers["Idempotent-Replayed"] = "true"
        caller.analysis_id = first.get("analysis_id")
    return first


def save(
    state: ServerState, caller: Caller, key: str | None, request_sha: str, make_response: Any, **analysis: Any
) -> dict[str, Any]:
    """Record the analysis (with the caller's key id) and build its response; with an Idempotency-Key both
    are saved in one transaction, so a retry finds the first response and no second record is made."""
    analysis["key_id"] = caller.key_id
    if key:
        out, _ = state.store.record_once(key, caller.principal, request_sha, make_response, **analysis)
    else:
        out = make_response(state.store.record(**analysis))
    caller.analysis_id = out["analysis_id"]
    return out


@router.post("/predict")
def predict(
    state: StateDep,
    caller: Writer,
    _slot: WorkSlot,
    response: Response,
    file: FileField,
    patient_id: PatientField = None,
    study_date: DateField = None,
    model: ModelField = None,
    idempotency_key: IdemKey = None,
) -> dict[str, Any]:
    """Ranked probabilities and findings above threshold for one image; the analysis is recorded."""
    t0 = time.perf_counter()
    request_sha = fingerprint("predict", file, patient_id=patient_id, study_date=study_date, model=model)
    if (first := replayed(state, caller, idempotency_key, request_sha, response)) is not None:
        return first
    served, upload, pid, date, source = prepare_upload(state, file, patient_id, study_date, model)
    outputs = analysis_outputs(served, served.predictor.probabilities([upload.image])[0], upload)
    out = save(
        state, caller, idempotency_key, request_sha, lambda rec: respond(rec, served, source),
        kind="predict", model=served.info, input_sha256=upload.sha256, outputs=outputs, patient_id=pid,
        study_date=date,
    )  # fmt: skip
    log.info("analysis %s predict model=%s %.1fms", out["analysis_id"], served.name, 1000 * (time.perf_counter() - t0))
    return out


@router.post("/explain")
def explain(
    state: StateDep,
    caller: Writer,
    _slot: WorkSlot,
    response: Response,
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
    idempotency_key: IdemKey = None,
) -> dict[str, Any]:
    """A heatmap of what drove the prediction: overlay PNG, raw map, boxes; plus the prediction. Recorded."""
    t0 = time.perf_counter()
    if overlay not in ("base64", "url"):
        raise ApiError(422, "bad_option", f"overlay must be 'base64' or 'url', got {overlay!r}.")
    if map_format not in ("list", "npy", "none"):
        raise ApiError(422, "bad_option", f"map_format must be 'list', 'npy' or 'none', got {map_format!r}.")
    fields = {"patient_id": patient_id, "study_date": study_date, "model": model, "method": method, "target": target,
              "overlay": overlay, "map_format": map_format, "map_size": map_size, "include_image": include_image}  # fmt: skip
    request_sha = fingerprint("explain", file, **fields)
    if (first := replayed(state, caller, idempotency_key, request_sha, response)) is not None:
        return first
    served, upload, pid, date, source = prepare_upload(state, file, patient_id, study_date, model)
    cam = served.predictor.explain(upload.image, method=method, target=target or None)
    classes = served.predictor.bundle.classes
    probs = np.array([cam.probabilities[c] for c in classes], dtype=np.float64)
    outputs = analysis_outputs(served, probs, upload)
    outputs["explanation"] = {
        "method": cam.method,
        "target": cam.target,
        "probability": cam.probability,
        "boxes": cam.boxes,
    }
    png = overlay_png(upload.image, cam.cam, f"{cam.target} {cam.probability:.2f}")
    expl = dict(outputs["explanation"])
    if overlay == "base64":
        expl["overlay_png_base64"] = png_b64(png)
    if map_format != "none":
        expl["map"] = encode_map(cam.cam, map_format, map_size)
    extra: dict[str, Any] = {"explanation": expl}
    if include_image:
        extra["image_png_base64"] = png_b64(array_png(upload.image))

    def make_response(rec: dict[str, Any]) -> dict[str, Any]:
        if overlay == "url":
            expl["overlay_url"] = f"/v1/explain/{rec['analysis_id']}/overlay.png"
        return respond(rec, served, source, extra)

    out = save(
        state, caller, idempotency_key, request_sha, make_response,
        kind="explain", model=served.info, input_sha256=upload.sha256, outputs=outputs, patient_id=pid,
        study_date=date,
    )  # fmt: skip
    if overlay == "url":
        state.overlays.put(out["analysis_id"], png)
    log.info("analysis %s explain model=%s %.1fms", out["analysis_id"], served.name, 1000 * (time.perf_counter() - t0))
    return out


@router.get("/explain/{analysis_id}/overlay.png", response_class=Response)
def explain_overlay(state: StateDep, analysis_id: str) -> Response:
    """The overlay of a recent /v1/explain call made with overlay=url (kept in memory for a while)."""
    png = state.overlays.get(analysis_id)
    if png is None:
        raise NotFound("No overlay kept for this analysis (expired or never made); re-run /v1/explain.")
    return Response(png, media_type="image/png")


@router.get("/analyses/{analysis_id}")
def get_analysis(state: StateDep, analysis_id: str) -> dict[str, Any]:
    """One recorded analysis: time, model, input SHA-256, patient, study date, outputs."""
    rec = state.store.get(analysis_id) if len(analysis_id) <= 64 else None
    if rec is None:
        raise NotFound(f"No analysis with ID {analysis_id[:64]!r}.")
    return rec

"""Serving latency for one image (prints JSON): predict, and predict + heatmap, p50 / p95 in ms.

    .venv/bin/python benchmarks/serving_latency.py [--model pneumonia] [--image X.jpeg | --image FOLDER] [--n 50]

With a FOLDER every call takes the next of its images (one global order, no image twice while the folder
lasts) and the run starts with an empty ``CXRKIT_HOME``: a bundle that cuts images to the lungs then segments
every image, as it does for new uploads (one repeated image would hit the lung-mask cache after the first call).

Measured two ways: in the library (decode + preprocess + forward, as the server runs it), and end to
end over HTTP (``POST /v1/predict`` and ``POST /v1/explain`` to uvicorn on 127.0.0.1, case store
write included, in a temporary SQLite file). The model defaults to ``pneumonia`` (shipped, or
``runs/pneumonia/bundle`` after training). The image defaults to the first file of
``../shared/data/kaggle-pneumonia/test`` (or ``train``), else a synthetic 1200 x 1000 PNG.
Targets on a 2-core CPU: predict p50 < 100 ms, predict + heatmap p50 < 250 ms.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import platform
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TARGETS_MS = {"predict_p50": 100, "predict_heatmap_p50": 250}


def pick_model(name: str) -> str:
    from cxrkit.core.errors import CxrkitError
    from cxrkit.models import resolve_bundle

    try:
        return str(resolve_bundle(name))
    except CxrkitError:
        local = ROOT / "runs" / name / "bundle"
        if (local / "config.json").is_file():
            return str(local)
        raise


def pick_image(path: str | None) -> tuple[bytes, str]:
    if path:
        return Path(path).read_bytes(), path
    for split in ("test", "train"):
        folder = ROOT.parent / "shared" / "data" / "kaggle-pneumonia" / split
        if folder.is_dir():
            for p in sorted(folder.rglob("*.jpeg")):
                return p.read_bytes(), str(p)
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:1200, 0:1000]
    img = 0.3 + 0.4 * np.exp(-((yy - 600) ** 2 + (xx - 500) ** 2) / (2 * 300**2)) + rng.normal(0, 0.03, (1200, 1000))
    buf = io.BytesIO()
    Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue(), "synthetic 1200x1000 PNG"


def pick_images(path: str | None, needed: int) -> tuple[list[bytes], str]:
    """One image (repeated), or a folder's images in sorted order (each used once while they last)."""
    if path and Path(path).is_dir():
        files = sorted(f for f in Path(path).rglob("*") if f.suffix.lower() in {".png", ".jpg", ".jpeg"})[:needed]
        reuse = "" if len(files) >= needed else f"; {needed} calls, so images repeat"
        return [f.read_bytes() for f in files], f"{path}: {len(files)} images, the next one per call{reuse}"
    data, source = pick_image(path)
    return [data], source


def timed(fn: Callable[[], object], n: int, warmup: int = 10) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    ms = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t0) * 1000)
    a = np.array(ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 1), "p95_ms": round(float(np.percentile(a, 95)), 1), "n": n}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="pneumonia")
    ap.add_argument("--image", default=None)
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument(
        "--threads", type=int, default=None, help="torch threads (default as the server: half the cores, 1-4)"
    )
    ap.add_argument("--no-http", action="store_true", help="library timings only")
    args = ap.parse_args()

    import httpx
    import uvicorn

    from cxrkit.serving.app import create_app
    from cxrkit.serving.predictor import Predictor, configure_threads
    from cxrkit.serving.render import overlay_png
    from cxrkit.serving.uploads import ServerLimits, decode_upload

    threads = configure_threads(args.threads)
    bundle = pick_model(args.model)
    images, source = pick_images(args.image, needed=4 * (args.n + 10))  # 4 measures, 10 warm-up calls each
    next_image = itertools.cycle(images).__next__
    data = images[0]
    if len(images) > 1:  # a fresh mask cache, so that lung models segment each new image
        os.environ["CXRKIT_HOME"] = tempfile.mkdtemp(prefix="cxrkit-bench-")
    predictor = Predictor.load(bundle)
    limits = ServerLimits()

    def lib_predict() -> None:
        predictor.probabilities([decode_upload(next_image(), limits).image])

    def lib_explain() -> None:
        img = decode_upload(next_image(), limits).image
        cam = predictor.explain(img)
        overlay_png(img, cam.cam, f"{cam.target} {cam.probability:.2f}")

    result: dict = {
        "model": predictor.describe() | {"path": bundle},
        "image": {"source": source, "bytes": len(data), "shape": list(decode_upload(data, limits).image.shape)},
        "device": str(predictor.device),
        "torch_threads": threads,
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_1m": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
        },
        "library": {"predict": timed(lib_predict, args.n), "predict_heatmap": timed(lib_explain, args.n)},
    }
    if not args.no_http:
        with tempfile.TemporaryDirectory() as tmp:
            app = create_app({"bench": predictor}, db_url=f"sqlite:///{tmp}/cases.db", limits=limits)
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            server = uvicorn.Server(
                uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
            )
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            while not server.started:
                time.sleep(0.05)
            try:
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:

                    def files() -> dict:
                        return {"file": ("x", next_image(), "application/octet-stream")}

                    def http_predict() -> None:
                        http.post("/v1/predict", files=files()).raise_for_status()

                    def http_explain() -> None:
                        http.post("/v1/explain", files=files(), data={"map_format": "none"}).raise_for_status()

                    result["http"] = {
                        "predict": timed(http_predict, args.n),
                        "predict_heatmap": timed(http_explain, args.n),
                    }
            finally:
                server.should_exit = True
                thread.join(timeout=10)
                app.state.cxr.store.close()
    result["targets_ms"] = TARGETS_MS
    result["machine"]["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""Hostile uploads against a real `cxr serve` process, then good predictions (issue 12; docs/SECURITY.md).

    PYTHONPATH=src python benchmarks/hostile_uploads.py [--model pneumonia] [--hostile 1000] [--good 200]

Phase 1: >= 1,000 generated hostile requests at 4 concurrent, covering every server-side category of
issue 12: Deflated/RLE/JPEG/JPEG 2000/JPEG-LS DICOM bombs, pixel-limit bombs, expensive images that
decode and then fail (7000x7000 NaN TIFF, truncated 7000x7000 PNG), non-finite pixels, broken files,
out-of-range dates, mathtext patient IDs (and their timeline.png), cross-site form posts, DNS-rebinding
Host headers, bad/under-scoped API keys, oversized bodies and idempotency keys. Pass: no 5xx, no
record, server peak RSS growth <= 500 MB, every response carries the security headers.
Phase 2: 200 good predictions at 8 concurrent (a quarter retried with the same Idempotency-Key).
Pass: no error and exactly 200 records. Prints one JSON summary; exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests import hostile

MB = 2**20


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _xray(seed: int, size: int = 256) -> bytes:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = 0.35 + 0.25 * np.exp(-((xx - 0.5) ** 2) / 0.05) * (1 - yy) + rng.normal(0, 0.05, (size, size))
    return _png((np.clip(img, 0, 1) * 255).astype(np.uint8))


def _nan_tiff(side: int) -> bytes:
    a = np.zeros((side, side), np.float32)
    a[side // 3, side // 2] = np.nan
    buf = io.BytesIO()
    Image.fromarray(a, mode="F").save(buf, format="TIFF", compression="tiff_adobe_deflate")
    return buf.getvalue()


def _bomb_png() -> bytes:
    buf = io.BytesIO()
    Image.new("1", (12000, 12000)).save(buf, format="PNG", optimize=True)  # 144 M pixels in a few KB
    return buf.getvalue()


def _uncompressed_dicom_claiming(rows: int, cols: int) -> bytes:
    head, body = hostile._header("1.2.840.10008.1.2.1", rows, cols)
    import struct

    return head + body + struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, 4096) + bytes(4096)


def corpus() -> dict[str, list[bytes]]:
    """Hostile files by category (a few variants each; requests cycle through them)."""
    t0 = time.perf_counter()
    big16 = hostile.big_flat_png(7000)
    c = {
        "dicom_deflate_bomb_1GiB": [hostile.deflated_dicom_bomb(1 << 30, r, r) for r in (512, 1024, 2048)],
        "dicom_deflate_header_bomb": [hostile.deflated_header_bomb(256 << 20)],
        "dicom_rle_bomb": [hostile.rle_bomb(8192, 8192), hostile.rle_bomb(2048, 2048, frames=200)],
        "dicom_jpeg_bomb": [
            hostile.encapsulated_dicom(ts, rows, rows, frames)
            for ts in (hostile.JPEG_BASELINE, hostile.JPEG2000, hostile.JPEG_LS)
            for rows, frames in ((30000, 1), (4096, 1000), (1024, 1))
        ],
        "dicom_header_claims_too_many_pixels": [_uncompressed_dicom_claiming(10000, 10000)],
        "png_pixel_bomb": [_bomb_png()],
        "expensive_nan_tiff_7000": [_nan_tiff(7000)],
        "expensive_truncated_png_7000": [big16[: len(big16) // 2]],
        "nan_inf_tiff": [hostile.float_tiff(nan=True), hostile.float_tiff(nan=False, inf=True)],
        "broken_files": [
            b"",
            b"\x89PNG\r\n\x1a\n",
            b"<html>x</html>",
            _xray(1)[:300],
            b"\xff\xd8\xff\xe0" + bytes(900),
        ],
    }
    print(f"corpus generated in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return c


def hostile_requests(n: int, files: dict[str, list[bytes]], keys: dict[str, str]) -> list[tuple[str, dict]]:
    """(category, request kwargs) for ``n`` requests, categories interleaved."""
    good = _xray(7)
    w = {"X-API-Key": keys["write"]}
    mathtext = [r"$\undefinedmacro$", "$x^{$", r"\frac{1}{0}$", "$" * 64]
    specs: dict[str, list[dict]] = {
        cat: [{"method": "POST", "url": "/v1/predict", "files": {"file": ("x.dcm", d)}, "headers": w} for d in ds]
        for cat, ds in files.items()
    }
    specs["explain_with_bombs"] = [
        {"method": "POST", "url": "/v1/explain", "files": {"file": ("x", d)}, "headers": w}
        for d in files["dicom_deflate_bomb_1GiB"][:1] + files["expensive_nan_tiff_7000"]
    ]
    specs["bad_study_dates"] = [
        {"method": "POST", "url": "/v1/predict", "files": {"file": ("x.png", good)}, "headers": w,
         "data": {"patient_id": "P", "study_date": d}}
        for d in ("0001-01-01", "9999-12-31", "1899-12-31", "20991231", "yesterday")
    ]  # fmt: skip
    specs["mathtext_patient_ids"] = [
        {"method": "POST", "url": "/v1/predict", "files": {"file": ("x.png", b"\x89PNG\r\n\x1a\n")}, "headers": w,
         "data": {"patient_id": p}}
        for p in mathtext
    ] + [
        {"method": "GET", "url": f"/v1/patients/{quote(p, safe='')}/timeline.png", "headers": w}
        for p in mathtext
    ]  # fmt: skip
    specs["cross_site_form_post"] = [
        {"method": "POST", "url": "/v1/predict", "files": {"file": ("x.png", good)}, "data": {"patient_id": "V"},
         "headers": {**w, **h}}
        for h in ({"Origin": "http://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"},
                  {"Referer": "http://evil.example/x.html"})
    ]  # fmt: skip
    specs["dns_rebinding_host"] = [
        {"method": m, "url": u, "headers": {**w, "Host": h}, **({"files": {"file": ("x.png", good)}} if m == "POST" else {})}
        for h in ("evil.example", "attacker.example:8000")
        for m, u in (("GET", "/v1/models"), ("POST", "/v1/predict"))
    ]  # fmt: skip
    specs["read_key_posts"] = [
        {
            "method": "POST",
            "url": "/v1/predict",
            "files": {"file": ("x.png", good)},
            "headers": {"X-API-Key": keys["read"]},
        }
    ]
    specs["long_idempotency_key"] = [
        {"method": "POST", "url": "/v1/predict", "files": {"file": ("x.png", good)},
         "headers": {**w, "Idempotency-Key": "k" * 500}}
    ]  # fmt: skip
    specs["oversized_body"] = [
        {"method": "POST", "url": "/v1/predict", "files": {"file": ("x.png", b"\x89PNG\r\n\x1a\n" + bytes(51 * MB))},
         "headers": w}
    ]  # fmt: skip
    # Bad keys count as failed attempts: fewer than the lockout (10 per client) so the run can go on.
    once = {"bad_api_keys": [{"method": "GET", "url": "/v1/models", "headers": {"X-API-Key": f"cxr_{i:012x}_guess"}}
                             for i in range(8)]}  # fmt: skip
    limited = {"oversized_body": 5, "dicom_deflate_header_bomb": 40}
    out: list[tuple[str, dict]] = [(c, s) for c, ss in once.items() for s in ss]
    pools = {c: itertools.cycle(s) for c, s in specs.items()}
    counts: Counter[str] = Counter()
    while len(out) < n:
        for c, pool in pools.items():
            if counts[c] < limited.get(c, n):
                out.append((c, next(pool)))
                counts[c] += 1
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _records(db: Path) -> int:
    with sqlite3.connect(db) as c:
        return int(c.execute("SELECT count(*) FROM analyses").fetchone()[0])


def run(model: str, n_hostile: int, n_good: int, only: str | None = None) -> dict:
    home = Path(tempfile.mkdtemp(prefix="cxrkit-hostile-"))
    db = home / "cases.db"
    env = {**os.environ, "CXRKIT_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    from cxrkit.serving.keys import KeyRing
    from cxrkit.serving.store import CaseStore

    store = CaseStore(f"sqlite:///{db}")
    ring = KeyRing(store)
    keys = {"write": ring.create("bench-writer", "write")[0], "read": ring.create("bench-reader", "read")[0]}
    store.close()
    port = _free_port()
    code = (
        "from cxrkit.serving.server import serve; "
        f"serve(models=[{model!r}], db_url={f'sqlite:///{db}'!r}, host='127.0.0.1', port={port})"
    )
    log = open(home / "server.log", "w")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start; see {home / 'server.log'}")
            time.sleep(0.5)
        files = corpus()
        reqs = hostile_requests(n_hostile, files, keys)
        if only:
            reqs = [r for r in reqs if r[0] in only.split(",")]
        rss0 = _rss(proc.pid)
        peak = {"rss": rss0}
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                peak["rss"] = max(peak["rss"], _rss(proc.pid))
                time.sleep(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        statuses: Counter[int] = Counter()
        by_cat: dict[str, Counter[int]] = {}
        missing_headers = 0
        client = httpx.Client(base_url=base, timeout=120)

        def send(item: tuple[str, dict]) -> tuple[str, int, bool]:
            cat, spec = item
            try:
                r = client.request(**spec)
            except httpx.TransportError:  # the server may close on a refused 51 MB body before it is sent
                return cat, 0, cat == "oversized_body"
            ok = (
                "frame-ancestors 'none'" in r.headers.get("content-security-policy", "")
                and r.headers.get("x-content-type-options") == "nosniff"
            )
            return cat, r.status_code, ok

        t0 = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            for cat, status, ok in pool.map(send, reqs):
                statuses[status] += 1
                by_cat.setdefault(cat, Counter())[status] += 1
                missing_headers += not ok
        hostile_s = time.perf_counter() - t0
        stop.set()
        watcher.join()
        hwm = _rss(proc.pid, "VmHWM")
        hostile_records = _records(db)
        growth = max(peak["rss"], hwm) - rss0

        # Phase 2: good predictions, a quarter retried with the same Idempotency-Key.
        good = [(i, _xray(1000 + i)) for i in range(n_good)]
        good_status: Counter[int] = Counter()

        def predict(item: tuple[int, bytes]) -> list[int]:
            i, data = item
            hdr = {"X-API-Key": keys["write"], "Idempotency-Key": f"good-{i}"}
            tries = 2 if i % 4 == 0 else 1
            return [
                client.post("/v1/predict", files={"file": (f"{i}.png", data)}, data={"patient_id": f"G{i % 20}"},
                            headers=hdr).status_code
                for _ in range(tries)
            ]  # fmt: skip

        t0 = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            for codes in pool.map(predict, good):
                good_status.update(codes)
        good_s = time.perf_counter() - t0
        client.close()
        good_records = _records(db) - hostile_records
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    summary = {
        "model": model,
        "hostile": {
            "requests": len(reqs),
            "concurrency": 4,
            "seconds": round(hostile_s, 1),
            "status_counts": dict(sorted(statuses.items())),
            "n_5xx": sum(v for k, v in statuses.items() if k >= 500),
            "records": hostile_records,
            "server_rss_start_mb": round(rss0 / MB),
            "server_peak_rss_growth_mb": round(growth / MB, 1),
            "responses_without_security_headers": missing_headers,
            "by_category": {c: dict(sorted(v.items())) for c, v in sorted(by_cat.items())},
        },
        "good": {
            "predictions": n_good,
            "requests_incl_retries": sum(good_status.values()),
            "concurrency": 8,
            "seconds": round(good_s, 1),
            "status_counts": dict(sorted(good_status.items())),
            "records": good_records,
        },
        "server_log": str(home / "server.log"),
    }
    unexplained = sum(v.get(0, 0) for c, v in by_cat.items() if c != "oversized_body")
    summary["hostile"]["transport_errors_outside_oversized"] = unexplained
    summary["pass"] = bool(
        summary["hostile"]["n_5xx"] == 0
        and unexplained == 0
        and hostile_records == 0
        and growth <= 500 * MB
        and missing_headers == 0
        and set(good_status) == {200}
        and good_records == n_good
        and len(reqs) >= min(n_hostile, 1000)
    )
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="pneumonia", help="bundle to serve (default: the shipped pneumonia model)")
    ap.add_argument("--hostile", type=int, default=1000)
    ap.add_argument("--good", type=int, default=200)
    ap.add_argument("--only", help="comma-separated hostile categories to send (diagnosis; the run then fails)")
    args = ap.parse_args()
    summary = run(args.model, args.hostile, args.good, args.only)
    print(json.dumps(summary, indent=2))
    if summary["pass"]:  # keep the server log and store only when something failed
        import shutil

        shutil.rmtree(Path(summary.pop("server_log")).parent, ignore_errors=True)
    sys.exit(0 if summary["pass"] else 1)


if __name__ == "__main__":
    main()

"""Serving fixtures: one tiny trained bundle and index per session, an app per test on a fresh SQLite store."""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session")
def serving_folder(small_learnable) -> Path:
    """12 NORMAL + 12 PNEUMONIA images of 32 px (Kaggle-style names: two images per patient)."""
    return small_learnable


@pytest.fixture(scope="session")
def serving_bundle(small_bundle) -> Path:
    """A tiny_cnn bundle trained in seconds (tests/conftest.py ``small_bundle``, shared with search)."""
    return small_bundle


@pytest.fixture(scope="session")
def serving_index(serving_bundle, serving_folder, tmp_path_factory) -> Path:
    from cxrkit.search import build_index

    out = tmp_path_factory.mktemp("serving_idx") / "index"
    build_index(serving_bundle, [str(serving_folder)], out, chunk_size=16)
    return out


@pytest.fixture(scope="session")
def predictor(serving_bundle):
    """One loaded Predictor shared by every app in the session (models load once)."""
    from cxrkit.serving.predictor import Predictor

    return Predictor.load(serving_bundle)


def png_bytes(seed: int = 0, size: int = 40, mode: str = "L", bright_blob: bool = False) -> bytes:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    img = rng.uniform(0.2, 0.5, (size, size))
    if bright_blob:
        img = img + 0.45 * np.exp(-((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (2 * (size / 6) ** 2))
    arr = (np.clip(img, 0, 1) * 255).astype(np.uint8)
    pil = Image.fromarray(arr)
    if mode != "L":
        pil = pil.convert(mode)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def make_client(predictor, tmp_path) -> Iterator:
    """``make_client(index=None, api_key=None, db_url=None, max_upload_mb=None, **create_app_kwargs)`` -> (TestClient, app).

    The client talks to http://localhost (a trusted Host name by default).
    """
    from fastapi.testclient import TestClient

    from cxrkit.serving.app import create_app
    from cxrkit.serving.uploads import ServerLimits

    clients = []

    def make(index=None, api_key=None, db_url=None, max_upload_mb=None, limits=None, **kw):
        url = db_url or f"sqlite:///{tmp_path / f'cases{len(clients)}.db'}"
        limits = limits or ServerLimits.from_env(max_upload_mb)
        app = create_app({"tiny": predictor}, index=index, db_url=url, api_key=api_key, limits=limits, **kw)
        client = TestClient(app, base_url="http://localhost")
        clients.append((client, app))
        return client, app

    yield make
    for client, app in clients:
        client.close()
        app.state.cxr.store.close()


@pytest.fixture
def client(make_client):
    return make_client()[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn serving an app in a thread on 127.0.0.1 and a free port."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start within 20 s")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _pg_bin() -> Path | None:
    import shutil

    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    if candidates:
        return candidates[0].parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server on 127.0.0.1 (Debian's binaries), as a SQLAlchemy psycopg URL.

    Runs as the ``postgres`` user when the tests run as root (initdb refuses root). Skips, saying why,
    where the binaries, the user or psycopg are missing or the server does not start.
    """
    import os
    import shutil
    import subprocess

    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'psycopg[binary]')")
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL binaries not found (apt-get install postgresql)")
    import tempfile

    prefix: list[str] = []
    # Not under pytest's basetemp: that is private to this user, and the server may run as another.
    root = Path(tempfile.mkdtemp(prefix="cxrkit-pg-"))
    if os.geteuid() == 0:
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root, ignore_errors=True)
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        runner = shutil.which("runuser")
        prefix = [runner, "-u", "postgres", "--"] if runner else ["su", "postgres", "-s", "/bin/sh", "-c"]
        shutil.chown(root, pw.pw_uid, pw.pw_gid)

    def run(args: list[str], timeout: int = 60) -> subprocess.CompletedProcess:
        cmd = [*prefix, *args] if not prefix or prefix[0] != "su" else [*prefix, " ".join(args)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)

    data, sock, port = root / "data", root / "sock", free_port()
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(sock, "postgres", "postgres")
    r = run([str(bindir / "initdb"), "-D", str(data), "-U", "cxr", "--auth=trust", "-E", "UTF8", "--no-sync"], 120)
    if r.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"initdb failed: {r.stderr.strip()[:300]}")
    opts = f"-h 127.0.0.1 -p {port} -k {sock} -F"
    r = run(
        [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log.txt"), "-o", opts, "-w", "-t", "60", "start"],
        90,
    )
    if r.returncode != 0:
        log = (root / "log.txt").read_text() if (root / "log.txt").exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"PostgreSQL did not start: {(r.stderr or log).strip()[:300]}")
    try:
        r = run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "cxr", "cases"])
        if r.returncode != 0:
            pytest.skip(f"createdb failed: {r.stderr.strip()[:300]}")
        yield f"postgresql+psycopg://cxr@127.0.0.1:{port}/cases"
    finally:
        run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])
        shutil.rmtree(root, ignore_errors=True)

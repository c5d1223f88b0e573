"""A dataset cache (cxr data cache) streamed from object storage: a local S3 server (moto) stands in for the
bucket, reached through the standard AWS variables, as a MinIO/Ceph endpoint would be."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
from pathlib import Path

import boto3
import numpy as np
import pytest
from typer.testing import CliRunner

from cxrkit.cli import app
from cxrkit.data import load_dataset
from cxrkit.data.cache import build_cache, load_cache
from cxrkit.data.images import load_image
from cxrkit.data.shards import open_shards
from tests.conftest import train_tiny_cnn

pytest.importorskip("litdata")
moto_server = pytest.importorskip("moto.server", reason="moto[server] not installed (pip install 'moto[server]')")

BUCKET, PREFIX = "cxr-test", "caches/small-32"


class _Requests(logging.Handler):
    """The server's request log (werkzeug's): which objects were fetched, how many times."""

    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())

    def chunk_gets(self) -> int:
        return sum(bool(re.search(r"GET /\S+/chunk-\S+\.bin", line)) for line in self.lines)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on a free local port, and the environment pointing boto3/LitData at it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    requests = _Requests()
    log = logging.getLogger("werkzeug")
    log.addHandler(requests)
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
            mp.delenv(name, raising=False)
        mp.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path_factory.mktemp("aws") / "none"))
        mp.setenv("CXRKIT_SHARD_CACHE", str(tmp_path_factory.mktemp("shard_cache")))
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield requests
        open_shards.cache_clear()  # readers bound to this server
    log.removeHandler(requests)
    server.stop()


@pytest.fixture(scope="module")
def remote_cache(s3, small_learnable, tmp_path_factory):
    """``small_learnable`` cached at 32 px, locally and uploaded as it is (as ``aws s3 sync`` would)."""
    local = tmp_path_factory.mktemp("c") / "cache"
    build_cache(load_dataset(small_learnable), local, size=32, workers=1)
    client = boto3.client("s3")
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        client.upload_file(str(path), BUCKET, f"{PREFIX}/{path.relative_to(local).as_posix()}")
    return local, f"s3://{BUCKET}/{PREFIX}"


def test_an_s3_cache_has_the_local_table_and_images(s3, remote_cache, tmp_path):
    local, uri = remote_cache
    here, there = load_cache(local), load_cache(uri)
    assert there.frame.drop(columns="path").equals(here.frame.drop(columns="path"))
    assert there.frame["path"][0] == f"{uri}/::shard[0]" and load_dataset(uri + "/").classes == here.classes
    assert len(load_dataset(f"{uri}::PNEUMONIA,NORMAL")) == 24
    before = s3.chunk_gets()
    for a, b in zip(here.frame["path"], there.frame["path"], strict=True):
        assert np.array_equal(load_image(a), load_image(b)), b
    # 24 images in one chunk: the chunk is downloaded once (not one ranged GET per image), into the shared
    # folder that every loader worker and later run reuses
    assert s3.chunk_gets() - before == 1
    assert list(Path(os.environ["CXRKIT_SHARD_CACHE"]).rglob("chunk-*.bin"))


@pytest.mark.slow
def test_evaluate_and_train_from_an_s3_cache(s3, remote_cache, small_bundle, tmp_path):
    local, uri = remote_cache
    runner = CliRunner()
    reports = []
    for data in (str(local), uri):
        r = runner.invoke(app, ["evaluate", "--model", str(small_bundle), data, "--json", "--n-boot", "0"])
        assert r.exit_code == 0, r.output
        reports.append(json.loads(r.stdout))
    here, there = reports
    assert here["n"] == there["n"] == 24  # the same images, the same probabilities
    for key in ("accuracy", "auroc", "sensitivity", "specificity"):
        assert there[key] == pytest.approx(here[key], abs=1e-9), key
    # one epoch of training, its validation and split record (content hashes of every row) from the bucket
    result = train_tiny_cnn(uri, tmp_path / "run", epochs=1)
    assert Path(result["bundle"], "model.safetensors").is_file()

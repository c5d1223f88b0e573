"""The server's bounded caches (cachetools LRU) and the one file hash (hashlib.file_digest)."""

from __future__ import annotations

import hashlib

from cxrkit.core.files import sha256_file
from cxrkit.serving.state import OverlayCache


def test_overlay_cache_keeps_the_recently_used():
    cache = OverlayCache(size=2)
    cache.put("a", b"A")
    cache.put("b", b"B")
    assert cache.get("a") == b"A"  # a is now the most recently used
    cache.put("c", b"C")
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (b"A", None, b"C")


def test_thumbnails_are_read_once(make_client, serving_index, monkeypatch):
    import cxrkit.io

    client, _ = make_client(index=serving_index)
    reads = []
    real = cxrkit.io.read_image
    monkeypatch.setattr(cxrkit.io, "read_image", lambda path, *a, **k: reads.append(path) or real(path, *a, **k))
    first = client.get("/v1/index/images/0?size=64")
    assert first.status_code == 200 and first.headers["content-type"] == "image/png"
    assert client.get("/v1/index/images/0?size=64").content == first.content
    assert len(reads) == 1
    client.get("/v1/index/images/0?size=32")  # another size is another entry
    assert len(reads) == 2


def test_sha256_file(tmp_path):
    data = bytes(range(256)) * 5000
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()

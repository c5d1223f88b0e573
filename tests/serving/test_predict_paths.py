"""`Predictor.predict_paths` (cxr predict): files decoded in the engine's DataLoader workers, in order,
with progress on long runs, and the same probabilities as one image at a time."""

from __future__ import annotations

import logging

import pytest

from cxrkit.core.errors import ImageDecodeError
from cxrkit.io import read_image
from cxrkit.models.engine import InferenceOptions
from cxrkit.serving.predictor import PROGRESS_MIN_IMAGES, Predictor
from tests.conftest import write_png


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict_paths")
    for i in range(PROGRESS_MIN_IMAGES + 6):
        write_png(root / f"img{i:03d}.png", seed=i, size=(36 + i % 5, 32))
    return root


def test_workers_give_what_one_image_at_a_time_gives(serving_bundle, folder, caplog):
    predictor = Predictor.load(serving_bundle, InferenceOptions(num_workers=2, batch_size=16, precision="fp32"))
    with caplog.at_level(logging.INFO, logger="cxrkit.models.engine"):
        results = predictor.predict_paths([folder], progress=True)
    paths = sorted(folder.glob("*.png"))
    assert [r["path"] for r in results] == [str(p) for p in paths]
    one_by_one = [predictor.predict_arrays([read_image(p)])[0] for p in paths[:8]]
    for got, want in zip(results, one_by_one, strict=False):
        assert got["findings"] == want["findings"]
        for c, v in want["probabilities"].items():
            assert got["probabilities"][c] == pytest.approx(v, abs=1e-6)
    n = len(paths)
    assert any(f"inference: {n}/{n} img" in r.getMessage() for r in caplog.records)  # progress off a terminal


def test_short_runs_are_quiet_and_bad_files_are_named(serving_bundle, folder, tmp_path, caplog):
    predictor = Predictor.load(serving_bundle, InferenceOptions(num_workers=2, batch_size=2), warmup=False)
    good = sorted(folder.glob("*.png"))[:3]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with caplog.at_level(logging.INFO, logger="cxrkit.models.engine"):
        skipped: list = []
        results = predictor.predict_paths([good[0], bad, *good[1:]], skipped=skipped, progress=True)
    assert not any("inference:" in r.getMessage() for r in caplog.records)
    assert [r["path"] for r in results] == [str(p) for p in good]
    assert [s["path"] for s in skipped] == [str(bad)] and set(skipped[0]) == {"path", "error"}
    with pytest.raises(ImageDecodeError, match="broken"):
        predictor.predict_paths([good[0], bad])
    with pytest.raises(ImageDecodeError, match="None of the 1 image"):
        predictor.predict_paths([bad], skipped=[])

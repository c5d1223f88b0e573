"""The shipped `lungs` segmenter: loads by name, stays small, and reproduces its validation Dice on ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxrkit.models.bundle import SHIPPED_DIR, list_bundles

LUNGS = SHIPPED_DIR / "lungs"
pytestmark = pytest.mark.skipif(not (LUNGS / "config.json").is_file(), reason="no shipped lungs bundle")


def test_lungs_is_a_small_segmentation_bundle() -> None:
    from cxrkit.models.segmentation import load_segmenter

    seg = load_segmenter("lungs")
    assert "lungs" in list_bundles("segmentation") and "lungs" not in list_bundles()
    size = sum(f.stat().st_size for f in LUNGS.iterdir())
    assert size <= 25 * 2**20, f"lungs is {size / 2**20:.1f} MiB; the issue allows 25 MB"
    assert seg.metrics["validation"]["dice_lungs"] >= 0.92
    assert "not a medical device" in (LUNGS / "MODEL_CARD.md").read_text()


@pytest.mark.real_data
def test_lungs_reaches_dice_on_its_own_validation_split(shared_data: Path) -> None:
    from cxrkit.data.segmentation import load_mask_pairs, split_pairs_by_patient
    from cxrkit.evaluation.segmentation import evaluate_segmenter
    from cxrkit.models.segmentation import load_segmenter

    seg = load_segmenter("lungs")
    data = seg.config["extra"]["recipe"]["data"]
    pairs = load_mask_pairs(shared_data / "covid-chestxray-lungmasks")
    val = split_pairs_by_patient(pairs, val=data["val"], seed=data["seed"]).query("split == 'val'")
    assert len(val) == seg.config["data_summary"]["splits"]["val"]["images"]  # the same patients as at training
    metrics = evaluate_segmenter(seg, val)
    assert metrics["dice_lungs"] >= 0.90, metrics
    assert metrics["dice_lungs"] == pytest.approx(seg.metrics["validation"]["dice_lungs"], abs=0.005)
    assert metrics["empty_correct"] == 1.0 or metrics["n"] == metrics["n_with_lungs"]  # lateral views left blank

"""Dice and IoU against hand-computed values and against segmentation-models-pytorch's metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cxrkit.evaluation.segmentation import dice_iou, segmentation_metrics


def test_dice_iou_hand_computed() -> None:
    # prediction: 4 pixels; target: 6 pixels; overlap: 3 -> Dice 6/10, IoU 3/7
    pred = np.zeros((4, 4), bool)
    pred[0, :4] = True
    target = np.zeros((4, 4), bool)
    target[0, 1:4] = True
    target[1, 1:4] = True
    dice, iou = dice_iou(pred, target)
    assert dice == pytest.approx(0.6)
    assert iou == pytest.approx(3 / 7)


def test_dice_iou_edge_cases() -> None:
    empty = np.zeros((3, 3), bool)
    full = np.ones((3, 3), bool)
    assert dice_iou(empty, empty) == (1.0, 1.0)  # a lateral view correctly left blank
    assert dice_iou(full, empty) == (0.0, 0.0)
    assert dice_iou(full, full) == (1.0, 1.0)
    with pytest.raises(ValueError, match="shape"):
        dice_iou(np.zeros((2, 2)), np.zeros((3, 3)))


def test_matches_smp_metrics_per_image() -> None:
    import segmentation_models_pytorch as smp

    rng = np.random.default_rng(0)
    preds = rng.random((5, 16, 16)) > 0.5
    targets = rng.random((5, 16, 16)) > 0.4
    tp, fp, fn, tn = smp.metrics.get_stats(
        torch.from_numpy(preds[:, None]).long(), torch.from_numpy(targets[:, None]).long(), mode="binary"
    )
    want_dice = smp.metrics.f1_score(tp, fp, fn, tn, reduction="micro-imagewise").item()
    want_iou = smp.metrics.iou_score(tp, fp, fn, tn, reduction="micro-imagewise").item()
    got = segmentation_metrics(list(preds), list(targets))
    assert got["dice"] == pytest.approx(want_dice, abs=1e-6)
    assert got["iou"] == pytest.approx(want_iou, abs=1e-6)


def test_aggregate_separates_empty_targets() -> None:
    t1 = np.zeros((4, 4), bool)
    t1[:2] = True  # 8 pixels
    p1 = np.zeros((4, 4), bool)
    p1[:1] = True  # 4 pixels inside: Dice 8/12
    empty = np.zeros((4, 4), bool)
    speck = np.zeros((4, 4), bool)
    speck[0, 0] = True  # 1/16 = 6% of the image: not "empty"
    m = segmentation_metrics([p1, empty, speck], [t1, empty, empty])
    assert m["n"] == 3 and m["n_with_lungs"] == 1
    assert m["dice_lungs"] == pytest.approx(8 / 12)
    assert m["iou_lungs"] == pytest.approx(0.5)
    assert m["dice"] == pytest.approx((8 / 12 + 1 + 0) / 3)
    assert m["empty_correct"] == pytest.approx(0.5)

"""Each audit check on a model with a known shortcut (a corner marker) and on one without."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrkit.audit import (
    AuditOptions,
    LungMasks,
    audit_table,
    blank,
    border_region,
    prior_lung_masks,
    resolve_lung_masks,
)
from cxrkit.audit.checks import cv_probe, label_matrix_auroc
from cxrkit.core.errors import ConfigError
from cxrkit.models.engine import InferenceOptions
from tests.audit.conftest import SPACE, exact_lungs

CHECKS = ("source_probe", "confounding", "per_source", "occlusion", "cam_in_lungs", "border")


def test_shortcut_is_flagged_by_border_and_occlusion(shortcut_audit):
    s = shortcut_audit.summary
    assert s["auroc"]["full"] > 0.95  # the marker decides the label, and the model learned it
    c = s["checks"]
    assert c["border"]["status"] == "fail" and c["border"]["auroc_border_blanked"] < 0.7
    assert c["occlusion"]["status"] == "fail"
    assert c["occlusion"]["auroc_lungs_blanked"] > 0.9  # still separates the classes without the lungs
    assert c["occlusion"]["auroc_outside_blanked"] < 0.7
    assert c["cam_in_lungs"]["per_class"]["PNEUMONIA"]["energy_in_lungs"] < 0.2  # it looks at the corner
    assert c["cam_in_lungs"]["status"] == "fail"
    assert s["targets"]["all"] is False


def test_shortcut_data_is_confounded_and_source_is_encoded(shortcut_audit):
    c = shortcut_audit.summary["checks"]
    assert c["confounding"]["status"] == "fail" and c["confounding"]["per_class"]["PNEUMONIA"] > 0.95
    assert c["source_probe"]["status"] == "warn" and c["source_probe"]["attributes"]["source"]["auroc"] > 0.9
    assert c["per_source"]["status"] == "fail"  # each site holds one class: no within-source AUROC
    assert all(r["auroc"] is None for r in c["per_source"]["sources"].values())


def test_lung_model_passes(clean_audit):
    s = clean_audit.summary
    c = s["checks"]
    assert s["auroc"]["full"] > 0.95
    assert c["occlusion"]["status"] == "ok"
    assert c["occlusion"]["auroc_lungs_blanked"] < 0.65 and c["occlusion"]["auroc_outside_blanked"] > 0.9
    assert c["border"]["status"] == "ok"
    assert c["cam_in_lungs"]["per_class"]["PNEUMONIA"]["energy_in_lungs"] > 0.8
    assert c["confounding"]["status"] == "ok" and c["source_probe"]["status"] == "ok"
    assert c["per_source"]["status"] == "ok"
    assert s["targets"]["all"] is True


def test_every_check_has_a_verdict_and_a_meaning(clean_audit, shortcut_audit):
    for result in (clean_audit, shortcut_audit):
        checks = result.summary["checks"]
        assert tuple(checks) == CHECKS
        for check in checks.values():
            assert check["status"] in ("ok", "warn", "fail", "skipped")
            assert check["verdict"] and "\n" not in check["verdict"]
            assert len(check["meaning"]) > 80


def test_no_lung_masks_skips_the_lung_checks(clean_model, clean_set):
    small = clean_set.subset(np.arange(16))
    r = audit_table(
        clean_model,
        small,
        small.labels,
        resolve_lung_masks("none"),
        AuditOptions(cam_per_class=2),
        InferenceOptions(num_workers=0),
    )
    c = r.summary["checks"]
    assert c["occlusion"]["status"] == "skipped" and c["cam_in_lungs"]["status"] == "skipped"
    assert "no lung masks" in c["occlusion"]["verdict"].lower()
    assert c["border"]["status"] != "skipped"
    assert r.summary["targets"]["all"] is None and r.summary["lung_masks"]["name"] == "none"


def test_empty_masks_skip_the_lung_checks_instead_of_passing_them(clean_model, clean_set):
    # A segmenter that finds no lungs (28 px MedMNIST thumbnails did this) blanks nothing: that is no lung test.
    small = clean_set.subset(np.arange(16))
    empty = LungMasks(lambda imgs: [np.zeros(np.shape(im), bool) for im in imgs], "empty")
    r = audit_table(
        clean_model, small, small.labels, empty, AuditOptions(cam_per_class=2), InferenceOptions(num_workers=0)
    )
    c = r.summary["checks"]
    assert c["occlusion"]["status"] == "skipped" and c["cam_in_lungs"]["status"] == "skipped"
    assert "found no lungs in 16 of 16" in c["occlusion"]["verdict"]


def test_auto_falls_back_to_the_prior_with_a_note(monkeypatch):
    import cxrkit.audit.masks as masks

    def missing(name):
        raise ImportError("no segmenter here")

    monkeypatch.setattr(masks, "_segmenter_provider", missing)
    lungs = resolve_lung_masks("auto")
    assert lungs.name == "prior" and "No lung segmenter" in lungs.note
    with pytest.raises(ConfigError, match="Cannot load the lung segmenter"):
        resolve_lung_masks("my-segmenter")


def test_prior_masks_cover_the_lung_fields():
    (m,) = prior_lung_masks([np.zeros((200, 160), np.float32)])
    assert m.shape == (200, 160) and m.dtype == bool
    assert 0.30 < m.mean() < 0.45
    assert not m[:, 78:82].any()  # the mediastinum between the lungs
    assert not m[:10].any() and not m[-10:].any()


def test_border_and_blank():
    region = border_region((20, 10), 0.1)
    assert region[:2].all() and region[-2:].all() and region[:, :1].all() and not region[2:18, 1:9].any()
    img = np.full((20, 10), 0.5, np.float32)
    img[5, 5] = 1.0
    assert blank(img, region)[region].max() == 0.0 and blank(img, region)[5, 5] == 1.0
    assert blank(img, region, fill="mean")[0, 0] == pytest.approx(img[~region].mean())
    with pytest.raises(ConfigError):
        border_region((20, 10), 0.6)
    with pytest.raises(ConfigError):
        blank(img, region, fill="white")


def test_mask_provider_must_match_the_image():
    lungs = LungMasks(lambda imgs: [np.ones((3, 3), bool) for _ in imgs], "bad")
    with pytest.raises(ConfigError, match="mask for a"):
        lungs([np.zeros((4, 4), np.float32)])
    ok = LungMasks(exact_lungs, "exact")([np.zeros((32, 32), np.float32)])
    assert ok[0].dtype == bool and ok[0].mean() == pytest.approx(0.25, abs=0.02)


def test_probe_separates_informative_from_random_features():
    rng = np.random.default_rng(0)
    y = np.array(["a", "b"] * 50)
    groups = np.arange(100).astype(str)
    informative = rng.normal(size=(100, 5)) + (y == "b")[:, None] * 2.0
    noise = rng.normal(size=(100, 5))
    assert cv_probe(informative, y, groups)["auroc"] > 0.9
    assert abs(cv_probe(noise, y, groups)["auroc"] - 0.5) < 0.2
    three = np.array(["a", "b", "c"] * 30)
    feats = rng.normal(size=(90, 3)) + np.eye(3)[["abc".index(v) for v in three]] * 3
    assert cv_probe(feats, three, np.arange(90).astype(str))["auroc"] > 0.9
    unknown = pd.Series(["a"] * 50 + [None] * 50, dtype=object)
    assert cv_probe(noise, unknown, groups)["auroc"] is None  # one known value: nothing to probe


def test_headline_auroc_binary_and_multiclass():
    from cxrkit.core.task import LabelSpace, TaskType

    labels = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], np.float32)
    assert label_matrix_auroc(SPACE, labels, np.array([[0.1], [0.9], [0.2], [0.8]]))["auroc"] == 1.0
    mc = LabelSpace(TaskType.MULTICLASS, ("a", "b", "c"))
    lab = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2]]
    perfect = label_matrix_auroc(mc, lab, lab * 0.8 + 0.1)
    assert perfect["auroc"] == 1.0 and set(perfect["per_class"]) == {"a", "b", "c"}


def test_rows_scored_per_task():
    from cxrkit.audit.run import rows_with_a_class
    from cxrkit.core.task import LabelSpace, TaskType

    nan = np.nan
    # binary model: NIH-style rows (negative unknown) kept and filled; an exclusive dataset's other class (0, 0) dropped
    keep, lab = rows_with_a_class(SPACE, np.array([[nan, 1], [nan, 0], [0, 0], [1, 0], [nan, nan]], np.float32))
    assert keep.tolist() == [True, True, False, True, False]
    assert lab[:2, 0].tolist() == [0.0, 1.0]
    mc = LabelSpace(TaskType.MULTICLASS, ("a", "b", "c"))
    keep, _ = rows_with_a_class(mc, np.array([[1, 0, 0], [0, 0, 0], [nan, nan, nan]], np.float32))
    assert keep.tolist() == [True, False, False]


def test_a_segmenter_bundle_is_a_mask_provider(tmp_path):
    from cxrkit.core.preprocess import Preprocessing
    from cxrkit.models.segmentation import create_segmenter, save_segmenter

    torch_model = create_segmenter(weights="none")
    folder = save_segmenter(
        tmp_path / "seg", torch_model, "unet_efficientnet_lite0", Preprocessing(image_size=64), 0.5, {}, {}, "test"
    )
    lungs = resolve_lung_masks(str(folder))
    assert lungs.available and lungs.name == str(folder) and "segmenter" in lungs.note
    masks = lungs([np.random.default_rng(0).random((70, 50), dtype=np.float32), np.zeros((40, 40), np.float32)])
    assert [m.shape for m in masks] == [(70, 50), (40, 40)] and all(m.dtype == bool for m in masks)


def test_auto_uses_the_shipped_lungs_segmenter():
    lungs = resolve_lung_masks("auto")
    assert lungs.name == "lungs" and lungs.available
    (mask,) = lungs([np.zeros((64, 64), np.float32)])
    assert mask.shape == (64, 64) and mask.dtype == bool

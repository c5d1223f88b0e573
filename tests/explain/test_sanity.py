"""Sanity checks that can fail (Adebayo et al. 2018): the map depends on the learned weights and on
where the evidence is."""

from __future__ import annotations

import numpy as np
import pytest

from cxrkit.explain import compute_cams, compute_cams_for_model, randomization_check, randomized_model, rank_correlation
from cxrkit.models import load_bundle

from .test_cam import _blob_images


def test_rank_correlation():
    a = np.arange(100, dtype=np.float32).reshape(10, 10)
    assert rank_correlation(a, a**2) == pytest.approx(1.0)
    assert rank_correlation(a, -a) == pytest.approx(-1.0)
    assert rank_correlation(a, np.ones_like(a)) == 0.0


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_trained_map_differs_from_randomised_weights(blob_bundle, blobs, method):
    bundle = load_bundle(blob_bundle)
    images = _blob_images(blobs, "PNEUMONIA", 6)
    check = randomization_check(bundle, images, method=method, target="PNEUMONIA", seed=1)
    assert check["mean_spearman"] < 0.5, check["spearman"]
    assert min(check["trained_std"]) > 0.05  # not uniform


def test_trained_map_concentrates_on_the_blob(blob_bundle, blobs):
    bundle = load_bundle(blob_bundle)
    images = _blob_images(blobs, "PNEUMONIA", 8)
    size = images[0].shape[0]
    yy, xx = np.mgrid[0:size, 0:size]
    r = np.hypot(yy - size / 2 + 0.5, xx - size / 2 + 0.5)
    centre, border = r < size / 6, r > size / 3  # the blob has sigma = size / 6

    def centre_to_border(model) -> float:
        res = compute_cams_for_model(model, bundle.label_space, bundle.preprocessing, images, target="PNEUMONIA")
        return float(np.median([r.cam[centre].mean() / max(r.cam[border].mean(), 1e-6) for r in res]))

    trained = centre_to_border(bundle.model)
    assert trained > 3.0  # measured ~35: the learned evidence is the blob
    assert centre_to_border(randomized_model(bundle, seed=1)) < trained / 3  # and not just the bright pixels


def test_eigencam_is_oriented_and_class_agnostic(blob_bundle, blobs):
    """EigenCAM's map is the first principal component of the activations: it must point at the blob
    (its sign is fixed by cxrkit), and it ignores the target class."""
    bundle = load_bundle(blob_bundle)
    images = _blob_images(blobs, "PNEUMONIA", 4)
    pos = compute_cams(bundle, images, method="eigencam", target="PNEUMONIA")
    neg = compute_cams(bundle, images, method="eigencam", target="NORMAL")
    for p, n in zip(pos, neg, strict=True):
        np.testing.assert_allclose(p.cam, n.cam, atol=1e-6)
        h, w = p.cam.shape
        assert p.cam[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3].mean() > p.cam.mean()

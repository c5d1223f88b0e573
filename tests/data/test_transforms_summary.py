from __future__ import annotations

import numpy as np
import pytest
import torch

from cxrkit.core.errors import ConfigError
from cxrkit.core.preprocess import Preprocessing
from cxrkit.data import load_dataset, summarize
from cxrkit.data.plots import class_count_plot, sample_grid
from cxrkit.data.torch_dataset import CxrImageDataset
from cxrkit.data.transforms import Augmentation, ImageTransform, resize


def test_squash_and_letterbox():
    img = torch.ones(1, 40, 20)
    sq = resize(img, 16, "squash")
    assert sq.shape == (1, 16, 16) and torch.allclose(sq, torch.ones_like(sq))
    lb = resize(img, 16, "letterbox")
    assert lb.shape == (1, 16, 16)
    # 40x20 -> 16x8 centred: 4 black columns either side.
    assert lb[:, :, :4].abs().max() == 0 and lb[:, :, -4:].abs().max() == 0
    assert torch.allclose(lb[:, :, 4:12], torch.ones(1, 16, 8))
    with pytest.raises(ConfigError, match="Unknown resize policy"):
        resize(img, 16, "crop")


def test_transform_normalises_and_repeats_channels():
    img = np.full((30, 30), 0.449, np.float32)
    x = ImageTransform(Preprocessing(image_size=24, in_chans=3))(img)
    assert x.shape == (3, 24, 24) and x.abs().max() < 1e-5


def test_augmentation_varies_and_stays_in_range():
    rng = np.random.default_rng(0)
    img = rng.random((64, 64)).astype(np.float32)
    t = ImageTransform(Preprocessing(image_size=48, mean=0.0, std=1.0), Augmentation(rotation=15, zoom=0.2))
    torch.manual_seed(0)
    a, b = t(img), t(img)
    assert a.shape == (1, 48, 48) and not torch.allclose(a, b)
    assert a.min() >= 0 and a.max() <= 1
    with pytest.raises(ConfigError, match="hflip is a probability"):
        Augmentation(hflip=2)


def test_torch_dataset_items(kaggle_tree):
    t = load_dataset(kaggle_tree)
    ds = CxrImageDataset(t, ImageTransform(Preprocessing(image_size=32)))
    x, y = ds[0]
    assert x.shape == (1, 32, 32) and x.dtype == torch.float32
    assert y.tolist() == t.labels[0].tolist()


def test_summary_keys_and_counts(kaggle_tree):
    s = summarize(load_dataset(kaggle_tree))
    assert s["n_images"] == 20 and s["n_patients"] == 16
    assert s["class_counts"] == {"NORMAL": 8, "PNEUMONIA": 12}
    assert s["split_counts"]["train"] == {"NORMAL": 4, "PNEUMONIA": 6}
    assert s["image_sizes"]["most_common"] == {"32x40": 20}
    assert s["leaking_patients"] == 0


def test_plots_are_pngs(kaggle_tree, tmp_path):
    t = load_dataset(kaggle_tree)
    for path in (class_count_plot(t, tmp_path / "c.png"), sample_grid(t, tmp_path / "s.png")):
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000

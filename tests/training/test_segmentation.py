"""Segmentation training end to end on tiny generated pairs; the mask follows geometric augmentation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cxrkit.core.errors import ConfigError, DataFormatError
from cxrkit.data.augment import Augmentation as AugmentSpec
from cxrkit.data.segmentation import load_mask_pairs, split_pairs_by_patient
from cxrkit.training.recipe import load_recipe
from cxrkit.training.segmentation import PairDataset, pair_augmentation
from tests.seg_helpers import synthetic_cxr, write_pairs


def _marked(size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """An image that shows its own mask: 0.9 inside an off-centre blob, 0.1 outside."""
    mask = np.zeros((size, size), np.uint8)
    mask[5:20, 8:30] = 1
    mask[30:44, 4:12] = 1
    return np.where(mask > 0, 0.9, 0.1).astype(np.float32), mask


def test_mask_follows_flip_exactly() -> None:
    img, mask = _marked()
    aug = pair_augmentation(AugmentSpec(hflip=1.0, rotation=0, zoom=0, shift=0, brightness=0, contrast=0))
    out = aug(image=img, mask=mask)
    assert np.array_equal(out["mask"], mask[:, ::-1])
    assert np.array_equal(out["image"] > 0.5, mask[:, ::-1] > 0)


def test_mask_follows_affine() -> None:
    img, mask = _marked()
    aug = pair_augmentation(AugmentSpec(hflip=0.5, rotation=25, zoom=0.3, shift=0.15, brightness=0, contrast=0))
    aug.set_random_seed(0)
    moved = 0
    for _ in range(6):
        out = aug(image=img, mask=mask)
        moved += not np.array_equal(out["mask"], mask)
        agree = ((out["image"] > 0.5) == (out["mask"] > 0)).mean()
        assert agree > 0.97  # only interpolation at the blob edges differs
    assert moved >= 4  # the affine step applies with p=0.9: the masks did move


def test_intensity_augmentation_leaves_mask_alone() -> None:
    img, mask = _marked()
    aug = pair_augmentation(AugmentSpec(hflip=0, rotation=0, zoom=0, shift=0, brightness=0.4, contrast=0.4))
    aug.set_random_seed(0)
    out = aug(image=img, mask=mask)
    assert np.array_equal(out["mask"], mask)


def test_pair_dataset_shapes_and_normalisation() -> None:
    img, mask = synthetic_cxr(32, seed=0)
    ds = PairDataset((img[None] / 255.0).astype(np.float32), mask[None].astype(np.uint8))
    x, y = ds[0]
    assert x.shape == y.shape == (1, 32, 32)
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    assert set(np.unique(y.numpy())) <= {0.0, 1.0}


def test_pairs_and_patient_split(tmp_path) -> None:
    root = write_pairs(tmp_path / "lungmasks", n=24)
    pairs = load_mask_pairs(root)
    assert len(pairs) == 24 and pairs["patient_id"].nunique() == 12
    split = split_pairs_by_patient(pairs, val=0.25, seed=0)
    by_patient = split.groupby("patient_id")["split"].nunique()
    assert (by_patient == 1).all()  # no patient on both sides
    assert set(split["split"]) == {"train", "val"}
    with pytest.raises(ConfigError):
        split_pairs_by_patient(pairs, val=1.5)
    with pytest.raises(DataFormatError, match=r"masks\.csv"):
        load_mask_pairs(tmp_path)


@pytest.fixture
def one_thread():
    """On a shared 2-core machine, 2 intra-op threads made training 5-10x slower than 1 (spin-waiting)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_train_segmentation_end_to_end(tmp_path, one_thread) -> None:
    from cxrkit.models.segmentation import load_segmenter
    from cxrkit.training.run import train_from_recipe

    root = write_pairs(tmp_path / "lungmasks", n=32, size=64)
    recipe = load_recipe(
        None,
        [
            "name=tinyseg",
            "kind=segmentation",
            f"out={tmp_path / 'run'}",
            f"data.sources=[{root}]",
            "data.val=0.25",
            "model.arch=unet_efficientnet_lite0",
            "model.weights=imagenet",
            "model.image_size=64",
            "augment.enabled=false",
            "train.epochs=6",
            "train.batch_size=8",
            "train.lr=0.003",
            "train.patience=20",
            "train.num_workers=0",
        ],
    )
    result = train_from_recipe(recipe, progress=False)
    assert result["n_train"] + result["n_val"] == 32
    assert result["val"]["dice_lungs"] > 0.7  # an all-lung or random mask scores about 0.3 here
    seg = load_segmenter(result["bundle"])
    cfg = json.loads((tmp_path / "run" / "bundle" / "config.json").read_text())
    assert cfg["kind"] == "segmentation" and cfg["metrics"]["validation"]["n"] == result["n_val"]
    assert (tmp_path / "run" / "bundle" / "MODEL_CARD.md").read_text().startswith("# Model card")
    img, mask = synthetic_cxr(64, seed=999)
    pred = seg.masks([img / 255.0])[0]
    assert pred.shape == mask.shape and (pred & mask).sum() / mask.sum() > 0.6

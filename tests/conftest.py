"""Shared fixtures: tiny generated PNG, JPEG, DICOM, CSV and NPZ data in tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

# One intra-op thread for the whole run, set before torch or numpy start their thread pools, so that
# spawned DDP ranks and CLI subprocesses inherit it. The models here are tiny; on a 2-core machine
# shared with other work, 2 OpenMP threads spin-wait for each other: a 4-epoch tiny_cnn training took
# 9.6 s with 2 threads and 5.0 s with 1 (backward 1.8 s vs 0.09 s), under the same load.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

# ../shared/data beside the checkout; CXRKIT_SHARED_DATA points elsewhere (a git worktree in another folder).
SHARED_DATA = Path(
    os.environ.get("CXRKIT_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data"
)


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason=f"real data folder {SHARED_DATA} is absent")
    for item in items:
        if "real_data" in item.keywords and not SHARED_DATA.is_dir():
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> None:
    # Again before each test: the server's configure_threads and some tests change it, process-wide.
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _one_blas_thread():
    # numpy's BLAS where it was loaded before the variables above were read (EigenCAM's SVD).
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@pytest.fixture
def shared_data() -> Path:
    return SHARED_DATA


def gradient(h: int = 40, w: int = 32, seed: int = 0) -> np.ndarray:
    """A deterministic uint8 test image with structure (not uniform)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = (yy * 255 / (h - 1) * 0.6 + xx * 255 / (w - 1) * 0.3 + rng.integers(0, 25, (h, w))).clip(0, 255)
    return img.astype(np.uint8)


def write_png(path: Path, seed: int = 0, size: tuple[int, int] = (40, 32)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(gradient(*size, seed=seed)).save(path)
    return path


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    photometric: str = "MONOCHROME2",
    patient_id: str | None = "P001",
    study_date: str | None = "20200131",
    view: str | None = "PA",
    slope: float | None = None,
    intercept: float | None = None,
    window: tuple[float, float] | None = None,
    with_pixels: bool = True,
) -> Path:
    """Write a minimal but valid DICOM file with pydicom."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    if patient_id:
        ds.PatientID = patient_id
    if study_date:
        ds.StudyDate = study_date
    if view:
        ds.ViewPosition = view
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    if slope is not None:
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept or 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if with_pixels:
        ds.PixelData = pixels.astype(np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def kaggle_tree(tmp_path: Path) -> Path:
    """root/{train,test}/{NORMAL,PNEUMONIA}/ with Kaggle-style file names (patients in the names)."""
    root = tmp_path / "chest_xray"
    names = {
        "NORMAL": ["IM-0001-0001.jpeg", "IM-0001-0002.jpeg", "NORMAL2-IM-0002-0001.jpeg", "IM-0003-0001.jpeg"],
        "PNEUMONIA": [
            "person1_bacteria_1.jpeg",
            "person1_bacteria_2.jpeg",
            "person2_virus_3.jpeg",
            "person3_bacteria_4.jpeg",
            "person4_virus_5.jpeg",
            "person5_bacteria_6.jpeg",
        ],
    }
    seed = 0
    for split in ("train", "test"):
        for cls, files in names.items():
            for f in files:
                p = root / split / cls / f
                p.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(gradient(seed=seed)).save(p, format="JPEG")
                seed += 1
    # Patients differ between train and test in the real set; make test names unique.
    for p in (root / "test").rglob("*.jpeg"):
        p.rename(p.with_name(p.name.replace("person", "person9").replace("IM-000", "IM-900")))
    return root


# Tiny trained models, one per session for the whole run (training, explain, search and serving share them).


def make_learnable_folder(root: Path, n_per_class: int = 24, size: int = 40, seed: int = 0) -> Path:
    """NORMAL images have a dark centre, PNEUMONIA a bright blob: learnable in a few steps.

    File names follow the Kaggle pattern so patients are known (two images per patient).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    blob = np.exp(-((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (2 * (size / 6) ** 2))
    for cls in ("NORMAL", "PNEUMONIA"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            base = rng.uniform(0.2, 0.5, (size, size))
            img = base + (0.45 * blob if cls == "PNEUMONIA" else -0.15 * blob)
            name = f"IM-{i // 2:04d}-{i % 2 + 1:04d}.png" if cls == "NORMAL" else f"person{i // 2}_bacteria_{i}.png"
            Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(root / cls / name)
    return root


# cxrkit's tiny_cnn at 32 px in one process: a few seconds per training (add data.sources, out, train.epochs).
TINY_CNN = [
    "data.val=0.25",
    "model.arch=tiny_cnn",
    "model.weights=none",
    "model.image_size=32",
    "train.batch_size=8",
    "train.lr=0.003",
    "train.optimizer=adam",
    "train.num_workers=0",
    "train.channels_last=false",
    "train.patience=10",
    "train.plots=false",  # ~1 s of matplotlib a training; the `trained` run below keeps them and is checked
]


def train_tiny_cnn(folder: Path, out: Path, epochs: int, plots: bool = False) -> dict:
    """Train cxrkit's tiny_cnn on ``folder`` (32 px, no augmentation, one process): a few seconds."""
    from cxrkit.training.recipe import load_recipe
    from cxrkit.training.run import train_from_recipe

    overrides = [f"data.sources=[{folder}]", f"out={out}", *TINY_CNN, "augment.enabled=false", f"train.epochs={epochs}"]
    overrides.append(f"train.plots={str(plots).lower()}")
    return train_from_recipe(load_recipe(None, overrides), progress=False)


@pytest.fixture(scope="session")
def learnable(tmp_path_factory) -> Path:
    """24 NORMAL + 24 PNEUMONIA images of 40 px (read-only: tests copy it before changing it)."""
    return make_learnable_folder(tmp_path_factory.mktemp("learnable") / "chest_xray")


@pytest.fixture(scope="session")
def trained(learnable, tmp_path_factory) -> tuple[dict, Path]:
    """tiny_cnn trained 6 epochs on ``learnable``: (train_from_recipe's summary, the run folder)."""
    out = tmp_path_factory.mktemp("run")
    return train_tiny_cnn(learnable, out, epochs=6, plots=True), out  # the full run folder, as `cxr train` writes it


@pytest.fixture(scope="session")
def small_learnable(tmp_path_factory) -> Path:
    """12 NORMAL + 12 PNEUMONIA images of 32 px; two images per patient (Kaggle-style names). Read-only."""
    return make_learnable_folder(tmp_path_factory.mktemp("small_learnable") / "chest_xray", n_per_class=12, size=32)


@pytest.fixture(scope="session")
def small_bundle(small_learnable, tmp_path_factory) -> Path:
    """tiny_cnn trained 4 epochs on ``small_learnable``; the bundle folder (read-only)."""
    out = tmp_path_factory.mktemp("small_run")
    return Path(train_tiny_cnn(small_learnable, out, epochs=4)["bundle"])

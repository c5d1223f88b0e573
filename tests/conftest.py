"""Shared fixtures: tiny generated PNG, JPEG, DICOM, CSV and NPZ data in tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# ../shared/data beside the checkout; CXRKIT_SHARED_DATA points elsewhere (a git worktree in another folder).
SHARED_DATA = Path(
    os.environ.get("CXRKIT_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data"
)


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason=f"real data folder {SHARED_DATA} is absent")
    for item in items:
        if "real_data" in item.keywords and not SHARED_DATA.is_dir():
            item.add_marker(skip)


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

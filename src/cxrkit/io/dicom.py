"""DICOM decoding with pydicom: modality LUT, VOI LUT / window, MONOCHROME1 inversion, 16-bit."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxrkit.core.errors import ImageDecodeError


@dataclass(frozen=True)
class DicomMeta:
    """The header fields cxrkit uses to fill a dataset table."""

    patient_id: str | None
    study_date: str | None  # ISO yyyy-mm-dd
    view: str | None
    rows: int | None
    columns: int | None
    modality: str | None


def _pydicom():
    import pydicom  # deferred: DICOM support costs nothing for PNG-only users

    return pydicom


def _iso_date(value: object) -> str | None:
    s = str(value or "").strip()
    if len(s) == 8 and s.isdigit():
        return f"{s[:4]}-{s[4:6]}-{s[6:]}"
    return s or None


def read_dicom_meta(path: str | Path) -> DicomMeta:
    """Read patient ID, study date and view from a DICOM header without decoding pixels."""
    pydicom = _pydicom()
    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception as e:  # pydicom raises many types for bad headers
        raise ImageDecodeError(f"{path}: cannot read the DICOM header ({e}).") from None
    view = ds.get("ViewPosition") or None
    return DicomMeta(
        patient_id=str(ds.get("PatientID")).strip() or None if ds.get("PatientID") is not None else None,
        study_date=_iso_date(ds.get("StudyDate")),
        view=str(view).strip() or None if view else None,
        rows=int(ds.Rows) if "Rows" in ds else None,
        columns=int(ds.Columns) if "Columns" in ds else None,
        modality=str(ds.get("Modality")) if ds.get("Modality") else None,
    )


def decode_dicom_bytes(data: bytes, name: str, limits) -> np.ndarray:
    """Decode DICOM pixel data to float32 (H, W) in [0, 1], where 1 is bright (dense) as on film."""
    pydicom = _pydicom()
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except Exception as e:
        raise ImageDecodeError(f"{name}: not a readable DICOM file ({e}).") from None
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise ImageDecodeError(f"{name}: the DICOM file has no pixel data (a report or structured document?).")
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    if rows * cols > limits.max_pixels:
        raise ImageDecodeError(f"{name}: {cols}x{rows} pixels exceeds the limit of {limits.max_pixels:,}.")
    if min(rows, cols) < limits.min_side:
        raise ImageDecodeError(f"{name}: {cols}x{rows} is too small to be an X-ray.")
    try:
        raw = ds.pixel_array
    except Exception as e:
        raise ImageDecodeError(
            f"{name}: cannot decode the DICOM pixel data ({e}). Compressed transfer syntaxes may need "
            "`pip install pylibjpeg pylibjpeg-libjpeg` or `pip install gdcm`."
        ) from None
    if raw.ndim == 3 and int(ds.get("SamplesPerPixel", 1)) == 1:
        raw = raw[0]  # multi-frame: the first frame is the radiograph
    if raw.ndim == 3:
        raw = raw[..., :3].mean(axis=-1)  # colour DICOM (rare for CXR): luminance-like average
    arr = apply_modality_lut(raw, ds).astype(np.float64)
    if "VOILUTSequence" in ds or "WindowCenter" in ds:
        arr = apply_voi_lut(arr, ds).astype(np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        arr = 1.0 - arr  # MONOCHROME1 stores dense tissue dark: invert so bone is bright
    return np.ascontiguousarray(arr, dtype=np.float32)

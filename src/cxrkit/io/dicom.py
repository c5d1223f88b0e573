"""DICOM decoding with pydicom: modality LUT, VOI LUT / window, MONOCHROME1 inversion, 16-bit."""

from __future__ import annotations

import io
import zlib
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


# Everything before the pixel data of a Deflated file may inflate to this much (private tags included).
HEADER_BUDGET = 4 << 20
_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # PixelData, FloatPixelData, DoubleFloatPixelData


def _pydicom():
    import pydicom  # deferred: DICOM support costs nothing for PNG-only users

    return pydicom


def _iso_date(value: object) -> str | None:
    s = str(value or "").strip()
    if len(s) == 8 and s.isdigit():
        return f"{s[:4]}-{s[4:6]}-{s[6:]}"
    return s or None


def _meta_from(ds) -> DicomMeta:
    view = ds.get("ViewPosition") or None
    return DicomMeta(
        patient_id=str(ds.get("PatientID")).strip() or None if ds.get("PatientID") is not None else None,
        study_date=_iso_date(ds.get("StudyDate")),
        view=str(view).strip() or None if view else None,
        rows=int(ds.Rows) if "Rows" in ds else None,
        columns=int(ds.Columns) if "Columns" in ds else None,
        modality=str(ds.get("Modality")) if ds.get("Modality") else None,
    )


def read_dicom_meta(path: str | Path) -> DicomMeta:
    """Read patient ID, study date and view from a DICOM header without decoding pixels."""
    try:
        data = Path(path).read_bytes()
        ds = _read_dataset(data, str(path), header_only=True)
    except ImageDecodeError:
        raise
    except Exception as e:  # pydicom raises many types for bad headers
        raise ImageDecodeError(f"{path}: cannot read the DICOM header ({e}).") from None
    return _meta_from(ds)


def read_dicom_header_bytes(data: bytes, name: str = "<upload>"):
    """The DICOM header (no pixel data) of a file in memory; a Deflated one inflates at most 4 MiB."""
    return _read_dataset(data, name, header_only=True)


def _is_pixels(tag, _vr, _length) -> bool:
    return int(tag) in _PIXEL_TAGS


def _read_dataset(data: bytes, name: str, header_only: bool = False, limits=None):
    """Parse a DICOM file; a Deflated dataset is inflated with a bound, never whole-hog as pydicom does.

    The header (everything before the pixel data) may inflate to ``HEADER_BUDGET`` bytes; with
    ``limits`` the pixel data may then add what the header's size fields allow (checked first), and
    anything beyond that is refused as a decompression bomb.
    """
    pydicom = _pydicom()
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble
    from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

    fp = DicomBytesIO(data)
    read_preamble(fp, False)
    meta = _read_file_meta_info(fp)
    if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=header_only)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    head = inflater.decompress(data[fp.tell() :], HEADER_BUDGET)
    header = read_dataset(DicomBytesIO(head), False, True, stop_when=_is_pixels)
    if header_only or limits is None:
        if not header_only:
            raise ImageDecodeError(f"{name}: a Deflated DICOM needs decode limits to be read.")
        body = head
    else:
        check_pixel_budget(header, name, limits)
        cap = HEADER_BUDGET + declared_pixel_bytes(header) + (1 << 16)
        body = head + inflater.decompress(inflater.unconsumed_tail, cap - len(head))
        if len(body) >= cap and (inflater.unconsumed_tail or inflater.decompress(b"", 1)):
            raise ImageDecodeError(
                f"{name}: refused as a decompression bomb: the Deflated data inflates past the "
                f"{cap:,} bytes its header declares."
            )
    ds = read_dataset(DicomBytesIO(body), False, True, stop_when=_is_pixels if header_only else None)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian  # what the inflated bytes are
    ds.file_meta = meta
    ds.set_original_encoding(False, True, ds.get("SpecificCharacterSet"))
    return ds


def declared_pixel_bytes(ds) -> int:
    """Bytes the header says its pixels take once decoded: rows x columns x frames x samples x bits / 8."""
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    frames = int(str(ds.get("NumberOfFrames", 1) or 1).strip() or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    bits = int(ds.get("BitsAllocated", 16) or 16)
    return rows * cols * max(frames, 1) * max(samples, 1) * max(bits, 1) // 8


def check_pixel_budget(ds, name: str, limits) -> None:
    """Refuse, from the header alone, pixel data whose decoded size passes the limits.

    One frame may hold ``limits.max_pixels`` pixels and all frames together ``max_pixels`` x 2 bytes
    (16 bits at the pixel limit), so no transfer syntax can be made to decode more than that.
    """
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    bits = int(ds.get("BitsAllocated", 16) or 16)
    if bits not in (1, 8, 16, 32, 64):
        raise ImageDecodeError(f"{name}: BitsAllocated {bits} is not a valid DICOM value (1, 8, 16, 32 or 64).")
    if rows * cols > limits.max_pixels:
        raise ImageDecodeError(
            f"{name}: {cols}x{rows} pixels exceeds the limit of {limits.max_pixels:,} (a decompression-bomb guard)."
        )
    budget = 2 * limits.max_pixels
    if declared_pixel_bytes(ds) > budget:
        raise ImageDecodeError(
            f"{name}: the header declares {declared_pixel_bytes(ds):,} bytes of pixels (rows x columns x frames "
            f"x samples x bits), above the limit of {budget:,} (a decompression-bomb guard)."
        )
    if min(rows, cols) < limits.min_side:
        raise ImageDecodeError(f"{name}: {cols}x{rows} is too small to be an X-ray.")


def decode_dicom_bytes(data: bytes, name: str, limits) -> np.ndarray:
    """Decode DICOM pixel data to float32 (H, W) in [0, 1], where 1 is bright (dense) as on film."""
    return decode_dicom_with_meta(data, name, limits)[0]


def decode_dicom_with_meta(data: bytes, name: str, limits) -> tuple[np.ndarray, DicomMeta]:
    """``decode_dicom_bytes`` plus the header fields, from one bounded parse.

    The header's sizes are checked against ``limits`` before any pixel is decoded or inflated; only the
    first frame is decoded; pixel values that are not finite are refused.
    """

    try:
        ds = _read_dataset(data, name, limits=limits)
    except ImageDecodeError:
        raise
    except Exception as e:
        raise ImageDecodeError(f"{name}: not a readable DICOM file ({e}).") from None
    try:
        return _pixels_and_meta(ds, name, limits)
    except ImageDecodeError:
        raise
    except Exception as e:  # pydicom parses elements lazily: a damaged one fails here, in any exception type
        raise ImageDecodeError(f"{name}: the DICOM file is damaged ({type(e).__name__}: {e}).") from None


def _pixels_and_meta(ds, name: str, limits) -> tuple[np.ndarray, DicomMeta]:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise ImageDecodeError(f"{name}: the DICOM file has no pixel data (a report or structured document?).")
    check_pixel_budget(ds, name, limits)
    try:
        ds.pixel_array_options(index=0)  # multi-frame: the first frame is the radiograph
        raw = ds.pixel_array
    except Exception as e:
        raise ImageDecodeError(
            f"{name}: cannot decode the DICOM pixel data ({e}). Compressed transfer syntaxes may need "
            "`pip install pylibjpeg pylibjpeg-libjpeg` or `pip install gdcm`."
        ) from None
    if raw.ndim == 3 and int(ds.get("SamplesPerPixel", 1)) == 1:
        raw = raw[0]
    if raw.ndim == 3:
        raw = raw[..., :3].mean(axis=-1)  # colour DICOM (rare for CXR): luminance-like average
    arr = apply_modality_lut(raw, ds).astype(np.float64)
    if "VOILUTSequence" in ds or "WindowCenter" in ds:
        arr = apply_voi_lut(arr, ds).astype(np.float64)
    if not np.isfinite(arr).all():
        raise ImageDecodeError(f"{name}: the DICOM pixel values are not all finite numbers (NaN/inf).")
    lo, hi = float(arr.min()), float(arr.max())
    arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        arr = 1.0 - arr  # MONOCHROME1 stores dense tissue dark: invert so bone is bright
    return np.ascontiguousarray(arr, dtype=np.float32), _meta_from(ds)

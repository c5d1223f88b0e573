"""Hostile and broken uploads, generated small: DICOM bombs, non-finite TIFFs, pixel-budget PNGs.

Shared by tests/serving/test_hardening.py and benchmarks/hostile_uploads.py.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

DEFLATED = "1.2.840.10008.1.2.1.99"
RLE = "1.2.840.10008.1.2.5"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG2000 = "1.2.840.10008.1.2.4.90"
JPEG_LS = "1.2.840.10008.1.2.4.80"


def _header(transfer_syntax: str, rows: int, cols: int, frames: int = 1, bits: int = 16, patient_id: str = "BOMB"):
    """(preamble + file meta bytes, dataset bytes without pixel data) in Explicit VR Little Endian."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info
    from pydicom.uid import generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax
    ds = Dataset()
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.PatientID = patient_id
    ds.Rows, ds.Columns = rows, cols
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    fp = DicomBytesIO()
    fp.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(fp, meta, enforce_standard=True)
    head = fp.getvalue()
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    return head, body.getvalue()


def _deflate_zeros(prefix: bytes, n_zeros: int) -> bytes:
    """Raw deflate of ``prefix`` + ``n_zeros`` zero bytes, fast: one 16 MiB block compressed once and repeated.

    Blocks ended by a full flush are byte-aligned and refer to nothing before them, so copies concatenate.
    """
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    out = [comp.compress(prefix), comp.flush(zlib.Z_FULL_FLUSH)]
    chunk = 1 << 24
    block = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    zeros = block.compress(bytes(chunk)) + block.flush(zlib.Z_FULL_FLUSH)
    out.append(zeros * (n_zeros // chunk))
    rest = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    out.append(rest.compress(bytes(n_zeros % chunk)) + rest.flush())
    return b"".join(out)


def deflated_dicom_bomb(pixel_bytes: int = 1 << 30, rows: int = 512, cols: int = 512) -> bytes:
    """A Deflated DICOM (rows x cols, 16-bit) whose PixelData holds ``pixel_bytes`` of zeros (~1 MB per GiB)."""
    head, body = _header(DEFLATED, rows, cols)
    return head + _deflate_zeros(body + struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, pixel_bytes), pixel_bytes)


def deflated_header_bomb(inflated: int = 256 << 20) -> bytes:
    """A Deflated DICOM whose header holds a huge private OB element before any pixel data."""
    head, _ = _header(DEFLATED, 64, 64)
    return head + _deflate_zeros(struct.pack("<HH2sHI", 0x0009, 0x1010, b"OB", 0, inflated), inflated)


def deflated_dicom(pixels: np.ndarray, patient_id: str = "DEFL") -> bytes:
    """A well-formed Deflated DICOM of a 16-bit image (what a good Deflated upload looks like)."""
    head, body = _header(DEFLATED, *pixels.shape, patient_id=patient_id)
    data = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    element = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, len(data)) + data
    comp = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return head + comp.compress(body + element) + comp.flush()


def encapsulated_dicom(transfer_syntax: str, rows: int, cols: int, frames: int = 1, fragment: bytes = b"") -> bytes:
    """A compressed-syntax DICOM (JPEG, JPEG 2000, JPEG-LS, RLE) declaring rows x cols x frames in its header."""
    head, body = _header(transfer_syntax, rows, cols, frames)
    frag = fragment or bytes(64)
    if len(frag) % 2:
        frag += b"\0"
    items = struct.pack("<HHI", 0xFFFE, 0xE000, 0)  # empty basic offset table
    for _ in range(frames):
        items += struct.pack("<HHI", 0xFFFE, 0xE000, len(frag)) + frag
    items += struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    pixel = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF) + items
    return head + body + pixel


def rle_bomb(rows: int = 8192, cols: int = 8192, frames: int = 1) -> bytes:
    """An RLE Lossless DICOM: a few hundred bytes of runs whose header asks for rows x cols x frames."""
    # RLE header: one segment at offset 64, then runs of 128 zeros (-127 -> repeat next byte 128 times).
    segment = bytes([0x81, 0]) * 64
    frag = struct.pack("<16I", 1, 64, *([0] * 14)) + segment
    return encapsulated_dicom(RLE, rows, cols, frames, frag)


def float_tiff(nan: bool = True, inf: bool = False, size: int = 64) -> bytes:
    """A 32-bit float TIFF with one NaN (or inf) pixel."""
    arr = np.random.default_rng(0).uniform(0, 1, (size, size)).astype(np.float32)
    if nan:
        arr[size // 2, size // 2] = np.nan
    if inf:
        arr[0, 0] = np.inf
    buf = io.BytesIO()
    Image.fromarray(arr, mode="F").save(buf, format="TIFF")
    return buf.getvalue()


def big_flat_png(side: int = 7000, bits: int = 16) -> bytes:
    """A tiny PNG of side x side pixels (16-bit flat): ~100 KB that decodes to ``side**2`` pixels."""
    arr = np.zeros((side, side), np.uint16 if bits == 16 else np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", optimize=False, compress_level=9)
    return buf.getvalue()

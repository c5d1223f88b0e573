"""Safe decoding of X-ray images into float32 HxW arrays in [0, 1].

Every failure names the file and says what is wrong: empty, truncated, too large (decompression
bomb), or not an image at all. Formats are sniffed from the content, never from the file name.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cxrkit.core.errors import ImageDecodeError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class DecodeLimits:
    """Bounds that protect a reader (and a server) from hostile or broken files."""

    max_bytes: int = 100 * 1024 * 1024
    max_pixels: int = 50_000_000  # ~7000 x 7000: above any real CXR detector
    min_side: int = 8


DEFAULT_LIMITS = DecodeLimits()


def sniff_format(head: bytes) -> str | None:
    """Name the format from the first bytes of a file: 'dicom', 'png', 'jpeg', 'bmp', 'tiff' or None."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"BM"):
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return None


def read_image(path: str | Path, limits: DecodeLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Decode an image file to a float32 array (H, W) in [0, 1].

    Raises:
        ImageDecodeError: the file is missing, empty, too large, truncated or not an image.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageDecodeError(f"{path}: no such file. Check the path (relative paths resolve from the CWD).") from None
    if size == 0:
        raise ImageDecodeError(f"{path}: the file is empty (0 bytes); re-copy or re-download it.")
    if size > limits.max_bytes:
        raise ImageDecodeError(
            f"{path}: {size / 2**20:.0f} MiB exceeds the {limits.max_bytes / 2**20:.0f} MiB limit for one image."
        )
    return read_image_bytes(path.read_bytes(), name=str(path), limits=limits)


def read_image_bytes(data: bytes, name: str = "<upload>", limits: DecodeLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Decode image bytes (PNG, JPEG, BMP, TIFF or DICOM) to a float32 array (H, W) in [0, 1]."""
    if not data:
        raise ImageDecodeError(f"{name}: the file is empty (0 bytes).")
    if len(data) > limits.max_bytes:
        raise ImageDecodeError(f"{name}: {len(data)} bytes exceeds the limit of {limits.max_bytes} bytes.")
    fmt = sniff_format(data[:132])
    if fmt == "dicom":
        from cxrkit.io.dicom import decode_dicom_bytes

        return decode_dicom_bytes(data, name=name, limits=limits)
    if fmt is None:
        raise ImageDecodeError(
            f"{name}: not a supported image (the content is not PNG, JPEG, BMP, TIFF or DICOM with a 'DICM' preamble)."
        )
    return _decode_pillow(data, name, limits)


def _decode_pillow(data: bytes, name: str, limits: DecodeLimits) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            # Pillow warns (then errors at 2x) above its own pixel limit; we apply our own limit below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            _check_dimensions(name, w, h, limits)
            img.load()
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageDecodeError(f"{name}: refused as a possible decompression bomb ({e}).") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(f"{name}: the content cannot be identified as an image.") from None
    except (OSError, SyntaxError, ValueError) as e:
        # Pillow reports truncation as OSError("image file is truncated ...").
        raise ImageDecodeError(f"{name}: the image is truncated or corrupt ({e}); re-copy or re-download it.") from None
    return pil_to_gray_float(img, name)


def _check_dimensions(name: str, w: int, h: int, limits: DecodeLimits) -> None:
    if w * h > limits.max_pixels:
        raise ImageDecodeError(
            f"{name}: {w}x{h} = {w * h:,} pixels exceeds the limit of {limits.max_pixels:,} "
            "(a decompression-bomb guard); downsample the image first."
        )
    if min(w, h) < limits.min_side:
        raise ImageDecodeError(f"{name}: {w}x{h} is too small to be an X-ray (minimum side {limits.min_side} px).")


BAND_ROWS = 256  # big images are copied out of Pillow a band at a time, never as one whole tobytes()


def _banded(img: Image.Image, src: type, check_finite: bool = False, name: str = "<image>") -> np.ndarray:
    """float32 (H, W) copy of a single-band image, built band by band: for a 7000x7000 image this keeps
    the peak at Pillow's buffer + the result instead of 3-4 whole copies; NaN/inf stop it early."""
    w, h = img.size
    out = np.empty((h, w), dtype=np.float32)
    for y in range(0, h, BAND_ROWS):
        band = np.asarray(img.crop((0, y, w, min(h, y + BAND_ROWS))), dtype=src)
        if check_finite and not np.isfinite(band).all():  # NaN would normalise to an all-black image
            raise ImageDecodeError(f"{name}: pixel values are not all finite numbers (NaN/inf); fix the export.")
        out[y : y + BAND_ROWS] = band
    return out


def pil_to_gray_float(img: Image.Image, name: str = "<image>") -> np.ndarray:
    """Convert any Pillow mode to grayscale float32 in [0, 1], keeping 16-bit precision."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = _banded(img, np.uint16)
        arr /= np.float32(65535.0)
    elif mode == "I":
        # 32-bit integer PNGs usually carry 16-bit data; scale by the type range actually used.
        raw = np.asarray(img, dtype=np.int64)
        hi = int(raw.max(initial=0))
        # Beyond 16 bits (a 32-bit TIFF) the data's own maximum is the top: values must stay in [0, 1].
        top = 255.0 if hi <= 255 else 65535.0 if hi <= 65535 else float(hi)
        arr = np.clip(raw, 0, None).astype(np.float32) / top
    elif mode == "F":
        arr = _banded(img, np.float32, check_finite=True, name=name)
        lo, hi = float(arr.min()), float(arr.max())
        if hi > lo:
            arr -= lo
            arr /= hi - lo
        else:
            arr[:] = 0
    elif mode in ("L", "1"):
        arr = _banded(img if mode == "L" else img.convert("L"), np.uint8)
        arr /= np.float32(255.0)
    elif mode in ("LA", "PA", "P", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "RGBX", "La"):
        # Palette, colour and alpha images: composite onto black, then luminance (ITU-R 601-2).
        if "A" in mode or (mode == "P" and "transparency" in img.info):
            img = img.convert("RGBA")
            bg = Image.new("RGBA", img.size, (0, 0, 0, 255))
            img = Image.alpha_composite(bg, img)
        arr = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    else:
        raise ImageDecodeError(f"{name}: unsupported pixel mode {mode!r}; convert it to grayscale PNG.")
    return np.ascontiguousarray(arr, dtype=np.float32)


def declared_pixels(data: bytes) -> int | None:
    """Pixels an image's header declares (width x height, x frames for DICOM), read without decoding
    pixels; None when the header cannot be read (the decoder will then say why)."""
    fmt = sniff_format(data[:132])
    try:
        if fmt == "dicom":
            from cxrkit.io.dicom import read_dicom_header_bytes

            ds = read_dicom_header_bytes(data)
            frames = int(str(ds.get("NumberOfFrames", 1) or 1).strip() or 1)
            return int(ds.get("Rows", 0) or 0) * int(ds.get("Columns", 0) or 0) * max(frames, 1)
        if fmt is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(io.BytesIO(data)) as img:
                    return img.size[0] * img.size[1]
    except Exception:  # a broken header: the decoder reports it properly
        return None
    return None


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image, read from its header only."""
    path = Path(path)
    with path.open("rb") as f:
        head = f.read(132)
    if sniff_format(head) == "dicom":
        from cxrkit.io.dicom import read_dicom_meta

        meta = read_dicom_meta(path)
        return meta.columns or 0, meta.rows or 0
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, UnidentifiedImageError) as e:
        raise ImageDecodeError(f"{path}: cannot read the image header ({e}).") from None

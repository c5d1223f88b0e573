"""Uploaded images: bounded reading, content sniffing, safe decoding, DICOM patient fields.

Every problem with an upload becomes an ``UploadError`` carrying the HTTP status that fits
(413 too large, 415 not a supported image, 422 broken or unusable) and a message naming the problem,
so that bad input never reaches the model, never gets recorded and never becomes a 5xx.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from cxrkit.core.errors import ConfigError, ImageDecodeError
from cxrkit.core.settings import MAX_CONCURRENT_ENV, MAX_QUEUE_ENV, max_upload_mb_setting, whole_number_setting
from cxrkit.io import DecodeLimits, DicomMeta, decode_dicom_with_meta, read_image_bytes, sniff_format
from cxrkit.serving.errors import ApiError

log = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_MB = 50.0
READ_CHUNK = 1 << 20


class UploadError(ApiError):
    """An upload (or a form field sent with it) the server refuses: 413, 415 or 422, with a short ``code``."""


@dataclass(frozen=True)
class ServerLimits:
    """Bounds on what one request may ask of the server."""

    max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 2**20)
    max_pixels: int = 50_000_000
    min_side: int = 8
    max_k: int = 100
    max_concurrent: int = 2  # analyses decoding / running the model at once
    max_queue: int = 8  # more may wait for a slot; beyond that 503 + Retry-After
    pixel_budget: int = 60_000_000  # decoded pixels held by all running analyses together
    queue_wait_s: float = 30.0

    @classmethod
    def from_env(cls, max_upload_mb: float | None = None, **overrides: Any) -> ServerLimits:
        """Limits from ``max_upload_mb`` or ``$CXRKIT_MAX_UPLOAD_MB`` (default 50), ``$CXRKIT_MAX_CONCURRENT``,
        ``$CXRKIT_MAX_QUEUE``; ``overrides`` (not None) win."""
        for field, env in (("max_concurrent", MAX_CONCURRENT_ENV), ("max_queue", MAX_QUEUE_ENV)):
            if overrides.get(field) is None:
                overrides[field] = whole_number_setting(env)
        overrides = {k: v for k, v in overrides.items() if v is not None}
        if max_upload_mb is None:
            max_upload_mb = max_upload_mb_setting()
        if max_upload_mb is None:
            max_upload_mb = DEFAULT_MAX_UPLOAD_MB
        if not max_upload_mb > 0:
            raise ConfigError(f"The upload limit must be > 0 MB, got {max_upload_mb}.")
        if overrides.get("max_concurrent", 1) < 1 or overrides.get("max_queue", 0) < 0:
            raise ConfigError("max_concurrent must be >= 1 and max_queue >= 0.")
        return cls(max_upload_bytes=int(max_upload_mb * 2**20), **overrides)

    @property
    def decode(self) -> DecodeLimits:
        return DecodeLimits(max_bytes=self.max_upload_bytes, max_pixels=self.max_pixels, min_side=self.min_side)


@dataclass
class DecodedUpload:
    """A decoded upload: the image, what it was, and the patient fields found in it."""

    image: np.ndarray
    sha256: str
    format: str
    n_bytes: int
    dicom_patient_id: str | None = None
    dicom_study_date: str | None = None

    def describe(self) -> dict[str, Any]:
        h, w = self.image.shape
        return {"sha256": self.sha256, "format": self.format, "bytes": self.n_bytes, "width": w, "height": h}


def read_bounded(stream: BinaryIO, limit: int) -> bytes:
    """Read at most ``limit`` bytes; one more means the file is too large (413), found without reading it all."""
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = stream.read(min(READ_CHUNK, limit + 1 - total))
        if not chunk:
            break
        total += len(chunk)
        if total > limit:
            raise UploadError(
                413,
                "too_large",
                f"The upload exceeds the limit of {limit / 2**20:g} MiB (set CXRKIT_MAX_UPLOAD_MB to change it).",
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _status_for(message: str) -> tuple[int, str]:
    low = message.lower()
    if "not all finite" in low:
        return 422, "non_finite"
    if "decompression" in low or "exceeds the limit" in low:
        return 413, "too_many_pixels"
    if "no pixel data" in low:
        return 422, "no_pixel_data"
    if "empty" in low:
        return 422, "empty"
    if "too small" in low:
        return 422, "too_small"
    if "not a supported" in low:
        return 415, "unsupported_format"
    return 422, "undecodable"


def decode_upload(data: bytes, limits: ServerLimits, name: str = "upload") -> DecodedUpload:
    """Sniff, decode and check an uploaded file.

    Raises:
        UploadError: empty (422), too large (413), not PNG/JPEG/BMP/TIFF/DICOM (415), truncated, corrupt,
            too small, DICOM without pixel data, or pixels that are not finite (422).
    """
    if not data:
        raise UploadError(422, "empty", f"The {name} is empty (0 bytes).")
    if len(data) > limits.max_upload_bytes:
        raise UploadError(413, "too_large", f"The {name} exceeds the limit of {limits.max_upload_bytes} bytes.")
    fmt = sniff_format(data[:132])
    if fmt is None:
        raise UploadError(
            415,
            "unsupported_format",
            f"The {name} is not a supported image: its content is not PNG, JPEG, BMP, TIFF or DICOM "
            "(the file name is not used; DICOM needs the 128-byte preamble and 'DICM').",
        )
    meta = None
    try:
        if fmt == "dicom":  # one bounded parse gives the pixels and the patient fields
            image, meta = decode_dicom_with_meta(data, name, limits.decode)
        else:
            image = read_image_bytes(data, name=name, limits=limits.decode)
    except ImageDecodeError as err:
        status, code = _status_for(str(err))
        raise UploadError(status, code, str(err)) from None
    except Exception as err:  # a hostile file must never become a 5xx
        log.warning("decoder raised %s on an upload (answered 422)", type(err).__name__)
        raise UploadError(
            422, "undecodable", f"The {name} cannot be decoded as {fmt} ({type(err).__name__})."
        ) from None
    if image.ndim != 2 or min(image.shape) < limits.min_side:
        raise UploadError(422, "too_small", f"The {name} decodes to shape {image.shape}, too small to be an X-ray.")
    if not np.isfinite(image).all():
        raise UploadError(422, "non_finite", f"The {name} has pixel values that are not finite numbers (NaN/inf).")
    upload = DecodedUpload(image=image, sha256=hashlib.sha256(data).hexdigest(), format=fmt, n_bytes=len(data))
    if meta is not None:
        upload.dicom_patient_id, upload.dicom_study_date = _dicom_patient(meta)
    return upload


def _dicom_patient(meta: DicomMeta) -> tuple[str | None, str | None]:
    """PatientID and StudyDate (ISO) from a DICOM header."""
    date = meta.study_date
    try:
        date = parse_study_date(date) if date else None
    except UploadError:
        date = None  # a malformed StudyDate tag is left out rather than refusing the image
    return meta.patient_id, date


EARLIEST_STUDY_DATE = _dt.date(1900, 1, 1)


def parse_study_date(value: str | None) -> str | None:
    """ISO ``yyyy-mm-dd`` from ``yyyy-mm-dd`` or DICOM ``yyyymmdd``, between 1900-01-01 and tomorrow; None for empty.

    Raises:
        UploadError: (422) any other form, or a date outside that range (no X-ray predates 1900 or the future).
    """
    if value is None or not str(value).strip():
        return None
    s = str(value).strip()
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            date = _dt.datetime.strptime(s, fmt).date()
        except ValueError:
            continue
        latest = _dt.datetime.now(_dt.UTC).date() + _dt.timedelta(days=1)
        if not EARLIEST_STUDY_DATE <= date <= latest:
            raise UploadError(
                422, "bad_study_date", f"study_date {s!r} is outside {EARLIEST_STUDY_DATE} .. {latest} (tomorrow)."
            )
        return date.isoformat()
    raise UploadError(422, "bad_study_date", f"study_date {s!r} is not a date: use yyyy-mm-dd (or DICOM yyyymmdd).")


def clean_patient_id(value: str | None) -> str | None:
    """A patient ID as stored: stripped, at most 128 printable characters; None for empty.

    Raises:
        UploadError: (422) too long or with control characters.
    """
    if value is None:
        return None
    s = str(value).strip()
    if not s:
        return None
    if len(s) > 128 or not s.isprintable() or "/" in s:
        raise UploadError(
            422,
            "bad_patient_id",
            "patient_id must be at most 128 printable characters without '/' or control characters.",
        )
    return s

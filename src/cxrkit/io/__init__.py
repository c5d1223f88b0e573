"""Decoding X-ray files (PNG, JPEG, 8/16-bit, DICOM) into float32 grayscale arrays in [0, 1]."""

from cxrkit.io.decode import (
    DEFAULT_LIMITS,
    DecodeLimits,
    declared_pixels,
    image_size,
    read_image,
    read_image_bytes,
    sniff_format,
)
from cxrkit.io.dicom import DicomMeta, decode_dicom_with_meta, read_dicom_meta

__all__ = [
    "DEFAULT_LIMITS",
    "DecodeLimits",
    "DicomMeta",
    "declared_pixels",
    "decode_dicom_with_meta",
    "image_size",
    "read_dicom_meta",
    "read_image",
    "read_image_bytes",
    "sniff_format",
]

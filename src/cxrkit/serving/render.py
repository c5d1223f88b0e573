"""Images and maps as the API sends them: PNG bytes, downsampled lists, base64 .npy."""

from __future__ import annotations

import base64
import io
from typing import Any

import cv2
import numpy as np

from cxrkit.explain import overlay

DISPLAY_SIDE = 768  # overlays are drawn at display size: full-resolution PNGs cost time and bandwidth
MIN_OVERLAY_SIDE = 384


def _fit(shape: tuple[int, int], max_side: int, upscale: bool = False) -> tuple[int, int]:
    h, w = shape
    scale = max_side / max(h, w) if upscale else min(1.0, max_side / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def _resize(a: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    if a.shape[:2] == hw:
        return a
    interp = cv2.INTER_AREA if hw[0] < a.shape[0] else cv2.INTER_LINEAR
    return cv2.resize(a, (hw[1], hw[0]), interpolation=interp)


def _png(rgb_or_gray: np.ndarray) -> bytes:
    img = rgb_or_gray if rgb_or_gray.ndim == 2 else cv2.cvtColor(rgb_or_gray, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:  # pragma: no cover - cv2 encodes any uint8 array
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def array_png(image: np.ndarray, max_side: int = DISPLAY_SIDE) -> bytes:
    """A decoded [0, 1] grayscale image as an 8-bit PNG, at most ``max_side`` pixels on its longest side."""
    small = _resize(np.asarray(image, dtype=np.float32), _fit(image.shape, max_side))
    return _png((np.clip(small, 0, 1) * 255 + 0.5).astype(np.uint8))


def overlay_png(image: np.ndarray, cam: np.ndarray, label: str, max_side: int = DISPLAY_SIDE) -> bytes:
    """The heatmap over the X-ray (``cxrkit.explain.overlay``) as a PNG at display size."""
    hw = _fit(image.shape, max_side)
    if max(hw) < MIN_OVERLAY_SIDE:  # draw small images larger, so that the label text stays legible
        hw = _fit(hw, MIN_OVERLAY_SIDE, upscale=True)
    small = _resize(np.asarray(image, dtype=np.float32), hw)
    small_cam = _resize(np.asarray(cam, dtype=np.float32), hw)
    return _png(overlay(small, small_cam, label_text=label))


def encode_map(cam: np.ndarray, fmt: str, size: int = 64) -> dict[str, Any]:
    """The raw map: 'list' (downsampled to ``size`` on its longest side, 3 decimals) or 'npy' (base64 .npy, full size)."""
    cam = np.asarray(cam, dtype=np.float32)
    if fmt == "npy":
        buf = io.BytesIO()
        np.save(buf, cam, allow_pickle=False)
        return {"format": "npy", "shape": list(cam.shape), "npy_base64": base64.b64encode(buf.getvalue()).decode()}
    small = _resize(cam, _fit(cam.shape, size))
    return {
        "format": "list",
        "shape": list(small.shape),
        "original_shape": list(cam.shape),
        "data": np.round(small, 3).tolist(),
    }

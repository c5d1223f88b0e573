"""A CAM drawn over its X-ray, with the class and probability written on it."""

from __future__ import annotations

import cv2
import numpy as np

from cxrkit.core.errors import ConfigError


def _to_gray_uint8(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] in (3, 4):
        img = img[..., :3].astype(np.float32).mean(axis=2)
        img = img / 255.0 if np.asarray(image).dtype == np.uint8 else img
    elif img.ndim != 2:
        raise ConfigError(f"overlay needs an (H, W) or (H, W, 3) image, got shape {img.shape}.")
    if img.dtype == np.uint8:
        return img
    return (np.clip(np.nan_to_num(img.astype(np.float32)), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def heatmap(cam: np.ndarray, colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
    """RGB uint8 (H, W, 3) colour image of a [0, 1] map."""
    cam8 = (np.clip(np.nan_to_num(np.asarray(cam, dtype=np.float32)), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(cam8, colormap), cv2.COLOR_BGR2RGB)


def overlay(image: np.ndarray, cam: np.ndarray, label_text: str = "", alpha: float = 0.4) -> np.ndarray:
    """Blend a heatmap of ``cam`` over the X-ray at the image's own resolution and write ``label_text``.

    Args:
        image: the decoded image, float (H, W) in [0, 1] (or uint8 gray / RGB).
        cam: (H, W) map in [0, 1] (a ``CamResult.cam``); resized to the image if its size differs.
        label_text: e.g. ``"PNEUMONIA 0.93"``; written top-left, white on a dark band, scaled to the
            image (about 4% of its height, narrower than the image). Empty: no text.
        alpha: weight of the heatmap, in [0, 1].

    Returns:
        RGB uint8 (H, W, 3).
    """
    if not 0 <= alpha <= 1:
        raise ConfigError(f"alpha must be in [0, 1], got {alpha}.")
    gray = _to_gray_uint8(image)
    h, w = gray.shape
    cam = np.asarray(cam, dtype=np.float32)
    if cam.shape != (h, w):
        cam = cv2.resize(cam, (w, h), interpolation=cv2.INTER_LINEAR)
    base = np.repeat(gray[..., None], 3, axis=2).astype(np.float32)
    out = ((1.0 - alpha) * base + alpha * heatmap(cam).astype(np.float32) + 0.5).astype(np.uint8)
    if label_text:
        _put_label(out, label_text)
    return out


def _put_label(img: np.ndarray, text: str) -> None:
    h, w = img.shape[:2]
    font = cv2.FONT_HERSHEY_SIMPLEX
    (tw, th), base = cv2.getTextSize(text, font, 1.0, 2)
    scale = min(0.04 * h / th, 0.95 * w / tw)
    scale = max(scale, 0.25)
    thickness = max(1, round(scale * 2))
    (tw, th), base = cv2.getTextSize(text, font, scale, thickness)
    margin = max(1, round(th * 0.3))
    cv2.rectangle(img, (0, 0), (min(w - 1, tw + 2 * margin), min(h - 1, th + base + 2 * margin)), (0, 0, 0), -1)
    cv2.putText(img, text, (margin, margin + th), font, scale, (255, 255, 255), thickness, cv2.LINE_AA)

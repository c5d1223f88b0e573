"""Lung masks for the shortcut audit, and the image edits (blanking) its checks make.

A mask provider is any callable ``images -> masks``: decoded float32 (H, W) images in [0, 1] in, one
boolean (H, W) mask per image out (True = lung). The audit never cares where masks come from: the
shipped ``lungs`` segmenter, a user's own segmenter, ground-truth masks, or, when nothing better is
available, a fixed geometric prior (two ellipses where the lungs sit on a frontal chest film).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from cxrkit.core.errors import ConfigError, CxrkitError

log = logging.getLogger(__name__)

MaskProvider = Callable[[Sequence[np.ndarray]], list[np.ndarray]]

# Where the lungs sit on a centred frontal (PA/AP) film, as fractions of height/width: centre row,
# left/right centre columns, half-height, half-width. Fitted to the mean of the 342 non-empty V7 lung masks of the
# COVID collection (pixels in >= half of them: rows 0.12-0.77, columns 0.10-0.43 and 0.56-0.89; area 0.35).
_PRIOR = (0.45, 0.27, 0.73, 0.34, 0.18)

PRIOR_NOTE = (
    "No lung segmenter was used, so lung masks are a fixed prior (two ellipses where the lungs sit on a centred "
    "frontal film), not segmentations. The occlusion and Grad-CAM numbers are rough: they are wrong for lateral "
    "views, rotated or off-centre films, and children. Use the shipped `lungs` segmenter (--lungs auto) or your "
    "own mask provider for real numbers."
)


@dataclass(frozen=True)
class LungMasks:
    """A mask provider with the name and note the report shows ("how were the lungs found?")."""

    provider: MaskProvider | None
    name: str
    note: str = ""

    @property
    def available(self) -> bool:
        return self.provider is not None

    def __call__(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        if self.provider is None:
            raise ConfigError("No lung mask provider: the lung-based checks were skipped.")
        masks = list(self.provider(images))
        if len(masks) != len(images):
            raise ConfigError(
                f"The lung mask provider {self.name!r} returned {len(masks)} masks for {len(images)} images."
            )
        out = []
        for img, m in zip(images, masks, strict=True):
            m = np.asarray(m)
            if m.shape != img.shape:
                raise ConfigError(
                    f"The lung mask provider {self.name!r} returned a {m.shape} mask for a {img.shape} image; "
                    "masks must have the image's size."
                )
            out.append(m.astype(bool))
        return out


def prior_lung_masks(images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Two fixed ellipses per image, where the lungs sit on a centred frontal film (a fallback, not a segmentation)."""
    out = []
    for img in images:
        h, w = np.asarray(img).shape[:2]
        yy, xx = np.mgrid[0:h, 0:w]
        cy, cx1, cx2, ry, rx = _PRIOR
        y = (yy + 0.5) / h
        x = (xx + 0.5) / w
        left = ((y - cy) / ry) ** 2 + ((x - cx1) / rx) ** 2 <= 1
        right = ((y - cy) / ry) ** 2 + ((x - cx2) / rx) ** 2 <= 1
        out.append(left | right)
    return out


def _segmenter_provider(name: str) -> MaskProvider:
    """The lung segmenter bundle ``name`` as a mask provider, loaded now (so a missing one fails here)."""
    from cxrkit.models.lungs import get_segmenter, lung_masks  # type: ignore[import-not-found,unused-ignore]

    segmenter = get_segmenter(name)
    return lambda images: list(lung_masks(images, segmenter=segmenter))


def resolve_lung_masks(spec: str | MaskProvider | LungMasks | None = "auto") -> LungMasks:
    """The lung masks the audit uses.

    Args:
        spec: ``"auto"`` (the ``lungs`` segmenter if installed, else the prior, with a note saying so),
            ``"prior"`` (the ellipse prior), ``"none"``/None (skip the lung-based checks), a segmenter
            bundle name or path, or a callable ``images -> masks``.
    """
    if isinstance(spec, LungMasks):
        return spec
    if callable(spec):
        return LungMasks(
            spec, getattr(spec, "__name__", "custom"), "Lung masks from a mask provider given by the caller."
        )
    if spec is None or spec == "none":
        return LungMasks(None, "none", "Lung-based checks skipped (--lungs none).")
    if spec == "prior":
        return LungMasks(prior_lung_masks, "prior", PRIOR_NOTE)
    name = "lungs" if spec == "auto" else str(spec)
    try:
        provider = _segmenter_provider(name)
    except (ImportError, OSError, CxrkitError) as err:
        if spec != "auto":
            raise ConfigError(
                f"Cannot load the lung segmenter {name!r} ({err}). Fix: --lungs auto, prior or none."
            ) from err
        log.warning("no lung segmenter available (%s): using the fixed lung prior", err)
        return LungMasks(prior_lung_masks, "prior", PRIOR_NOTE)
    return LungMasks(provider, name, f"Lung masks from the segmenter `{name}`.")


def border_region(shape: tuple[int, int], fraction: float) -> np.ndarray:
    """Boolean mask of the outer ``fraction`` of each side (True in the border)."""
    if not 0 < fraction < 0.5:
        raise ConfigError(f"The border fraction must be in (0, 0.5), got {fraction}.")
    h, w = shape
    by, bx = max(1, round(h * fraction)), max(1, round(w * fraction))
    region = np.ones((h, w), bool)
    region[by : h - by, bx : w - bx] = False
    return region


def blank(image: np.ndarray, region: np.ndarray, fill: str = "black") -> np.ndarray:
    """A copy of ``image`` with ``region`` set to black (0) or to the mean of the rest of the image."""
    out = np.array(image, dtype=np.float32, copy=True)
    if fill == "black":
        value = 0.0
    elif fill == "mean":
        rest = out[~region]
        value = float(rest.mean()) if rest.size else 0.0
    else:
        raise ConfigError(f"Unknown fill {fill!r}. Fix: use black or mean.")
    out[region] = value
    return out

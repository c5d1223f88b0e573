"""What input a bundle was made for (``intended_input`` in its config.json), and warnings for uploads outside it.

A model trained on 28 px MedMNIST thumbnails still answers for a 2000 px radiograph (it is resized), but
its numbers then mean little: the page, the API and ``cxr predict`` say so instead of staying silent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cxrkit.core.errors import BundleError


@dataclass(frozen=True)
class IntendedInput:
    """The images a model was trained on.

    Attributes:
        description: one line a user reads ("pediatric frontal CXRs, Kaggle/Kermany, 224 px").
        min_side: shorter image side below which a warning is given (px), or None.
        max_side: longer image side above which a warning is given (px), or None.
    """

    description: str = ""
    min_side: int | None = None
    max_side: int | None = None

    @classmethod
    def from_dict(cls, data: Any, where: str = "config.json") -> IntendedInput | None:
        """Read ``intended_input`` from a bundle config (None when absent).

        Raises:
            BundleError: a field has the wrong type or min_side > max_side.
        """
        if data is None:
            return None
        if not isinstance(data, dict):
            raise BundleError(f"{where}: intended_input must be an object with description/min_side/max_side.")
        sides: dict[str, int | None] = {}
        for key in ("min_side", "max_side"):
            v = data.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise BundleError(
                    f"{where}: intended_input.{key} must be a positive whole number of pixels, got {v!r}."
                )
            sides[key] = v
        lo, hi = sides["min_side"], sides["max_side"]
        if lo is not None and hi is not None and lo > hi:
            raise BundleError(f"{where}: intended_input.min_side {lo} is above max_side {hi}.")
        return cls(str(data.get("description") or ""), lo, hi)

    def to_dict(self) -> dict[str, Any]:
        return {"description": self.description, "min_side": self.min_side, "max_side": self.max_side}

    def warnings(self, width: int, height: int) -> list[str]:
        """Plain-language warnings for a ``width`` x ``height`` image outside this intended input (else [])."""
        what = f" ({self.description})" if self.description else ""
        out = []
        if self.min_side is not None and min(width, height) < self.min_side:
            out.append(
                f"This {width}x{height} image is smaller than the model was made for: it expects images at least "
                f"{self.min_side} px on the shorter side{what}. The result may not be meaningful."
            )
        if self.max_side is not None and max(width, height) > self.max_side:
            out.append(
                f"This {width}x{height} image is larger than the model was made for: it expects images at most "
                f"{self.max_side} px on the longer side{what}. It was shrunk to fit, and the result may not be "
                "meaningful; choose a model trained on full-size radiographs."
            )
        return out

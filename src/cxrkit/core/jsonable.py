"""Numbers from numpy (or torch) as JSON: the one place cxrkit turns arrays and scalars into plain Python.

Duck-typed on ``tolist()`` (numpy arrays and scalars, torch tensors all have it), so core needs neither
library. Two uses: ``to_jsonable`` for strict JSON (API answers, reports: NaN and inf become null) and
``json_text`` for files cxrkit writes and reads back itself (``config.json`` keeps NaN as NaN).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any


def _is_array_like(value: Any) -> bool:
    return hasattr(value, "tolist") and not isinstance(value, str | bytes)


def to_jsonable(value: Any) -> Any:
    """Recursively turn numpy/torch scalars and arrays into plain Python; NaN and inf become None."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if _is_array_like(value):
        return to_jsonable(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def nan_to_none(value: Any) -> float | None:
    """A float, or None where it is NaN or infinite (undefined)."""
    v = float(value)
    return v if math.isfinite(v) else None


def json_default(value: Any) -> Any:
    """``json.dumps(default=...)``: arrays and scalars as lists and numbers, paths as strings."""
    if _is_array_like(value):
        return value.tolist()
    if isinstance(value, PurePath):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _lenient_default(value: Any) -> Any:
    try:
        return json_default(value)
    except TypeError:
        return str(value)


def json_text(obj: Any, *, lenient: bool = False, indent: int | None = 2) -> str:
    """``obj`` as JSON text ending in a newline.

    ``lenient``: anything else is written as its ``str()`` (summaries meant for people, printed results);
    otherwise an unknown type is a TypeError (files cxrkit reads back, such as a bundle's config).
    """
    return json.dumps(obj, indent=indent, default=_lenient_default if lenient else json_default) + "\n"

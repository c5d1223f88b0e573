"""One vocabulary for numeric precision: ``fp32`` or ``bf16``, in recipes (training) and inference options.

Lightning has its own names ("32-true", "bf16-mixed"); recipes written with them still load (they are read as
their cxrkit name), and the trainer gets Lightning's name from ``lightning_precision``.
"""

from __future__ import annotations

from cxrkit.core.errors import ConfigError

PRECISIONS = ("fp32", "bf16")
_ALIASES = {"32-true": "fp32", "32": "fp32", "bf16-mixed": "bf16"}
_LIGHTNING = {"fp32": "32-true", "bf16": "bf16-mixed"}


def normalise_precision(value: object) -> str:
    """``fp32``/``bf16`` for a cxrkit or Lightning precision name.

    Raises:
        ConfigError: any other value (the message lists the valid ones).
    """
    name = _ALIASES.get(str(value).strip().lower(), str(value).strip().lower())
    if name not in PRECISIONS:
        raise ConfigError(f"precision must be {' or '.join(PRECISIONS)}, got {value!r}.")
    return name


def lightning_precision(name: str) -> str:
    """The Lightning Trainer's name for a cxrkit precision (bf16: mixed precision, weights kept in fp32)."""
    return _LIGHTNING[normalise_precision(name)]

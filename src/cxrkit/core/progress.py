"""Progress for long work: a tqdm bar on a terminal, else a log line every few seconds (and at the end).

Piped or redirected runs (CI, nohup, a scheduler) see no bar; without these lines they would print
nothing for minutes.
"""

from __future__ import annotations

import logging
import time
from typing import Any

LOG_EVERY_S = 10.0


class Progress:
    """``update(n)`` as work is done; ``close()`` at the end (or use it as a context manager)."""

    def __init__(self, total: int, desc: str, unit: str = "img", bar: bool = False, logger: str = "cxrkit") -> None:
        self.total, self.desc, self.unit = int(total), desc, unit
        self.done = 0
        self._log = logging.getLogger(logger)
        self._t0 = self._last = time.monotonic()
        self._bar: Any = None
        if bar:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, desc=desc, unit=unit)

    def update(self, n: int) -> None:
        self.done += int(n)
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last >= LOG_EVERY_S and self.done < self.total:
            self._last = now
            self._line(now)

    def _line(self, now: float) -> None:
        pct = 100.0 * self.done / self.total if self.total else 100.0
        rate = self.done / max(now - self._t0, 1e-9)
        self._log.info(
            "%s: %d/%d %s (%.0f%%), %.0f s, %.1f %s/s",
            self.desc, self.done, self.total, self.unit, pct, now - self._t0, rate, self.unit,
        )  # fmt: skip

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.total:
            self._line(time.monotonic())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

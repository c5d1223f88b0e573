"""A bounded work queue for the expensive part of a request (decode + model), with a pixel budget.

At most ``slots`` requests decode and run the model at once, and together they hold at most
``pixel_budget`` decoded pixels (one request alone may always run: its own size is bounded by
``ServerLimits.max_pixels``). At most ``max_waiting`` more wait, each for ``wait_s`` at most; past that
the server answers 503 with ``Retry-After`` at once instead of piling up threads and memory.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from cxrkit.serving.errors import Unavailable

TRIM_ABOVE_PIXELS = 4_000_000


def _malloc_trim() -> Callable[[], None]:
    """glibc's malloc_trim: hands freed heap memory back to the OS (a no-op elsewhere).

    Pillow and NumPy free a big image's buffers in the arena of the thread that decoded it; without a
    trim each worker thread keeps its last big image's worth of RSS.
    """
    try:
        import ctypes

        trim = ctypes.CDLL("libc.so.6").malloc_trim
        return lambda: trim(0)
    except (OSError, AttributeError):
        return lambda: None


release_memory = _malloc_trim()


class WorkQueue:
    def __init__(self, slots: int = 2, max_waiting: int = 8, pixel_budget: int = 60_000_000, wait_s: float = 30.0):
        self.slots = max(1, int(slots))
        self.max_waiting = max(0, int(max_waiting))
        self.pixel_budget = int(pixel_budget)
        self.wait_s = float(wait_s)
        self._cond = threading.Condition()
        self._running = 0
        self._pixels = 0
        self._waiting = 0
        self.refused = 0

    def _fits(self, pixels: int) -> bool:
        if self._running >= self.slots:
            return False
        return self._running == 0 or self._pixels + pixels <= self.pixel_budget

    def _busy(self, why: str) -> Unavailable:
        self.refused += 1
        retry = max(1, math.ceil(min(self.wait_s, 5.0)))
        return Unavailable("busy", f"The server is busy ({why}); retry in {retry} s. Nothing was recorded.", retry)

    @contextmanager
    def slot(self, pixels: int) -> Iterator[None]:
        """Hold a work slot and ``pixels`` of the budget while the body runs.

        Raises:
            Unavailable: 503 ``busy`` (with ``Retry-After``) when the queue is full or the wait times out.
        """
        pixels = max(0, int(pixels))
        with self._cond:
            if not self._fits(pixels):
                if self._waiting >= self.max_waiting:
                    raise self._busy(f"{self._running} analyses running and {self._waiting} waiting")
                self._waiting += 1
                try:
                    deadline = time.monotonic() + self.wait_s
                    while not self._fits(pixels):
                        left = deadline - time.monotonic()
                        if left <= 0:
                            raise self._busy(f"waited {self.wait_s:g} s for a work slot")
                        self._cond.wait(left)
                finally:
                    self._waiting -= 1
            self._running += 1
            self._pixels += pixels
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1
                self._pixels -= pixels
                self._cond.notify_all()
            if pixels >= TRIM_ABOVE_PIXELS:
                release_memory()

    def describe(self) -> dict[str, int | float]:
        with self._cond:
            return {
                "slots": self.slots,
                "running": self._running,
                "waiting": self._waiting,
                "max_waiting": self.max_waiting,
                "pixels_in_flight": self._pixels,
                "pixel_budget": self.pixel_budget,
                "refused": self.refused,
            }

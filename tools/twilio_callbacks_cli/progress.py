"""A plain text progress bar on stderr, safe to advance from worker threads."""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import TextIO

_WIDTH = 30
# Redraw at most this often: a terminal is slower than a busy thread pool.
_REDRAW_SECONDS = 0.1


class ProgressBar:
    """``[#######.......]  312/1000  31%  254/s`` redrawn in place; silent when disabled."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.total = total
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.done = 0
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._drawn_at = 0.0

    def advance(self, amount: int = 1) -> None:
        with self._lock:
            self.done += amount
            now = time.monotonic()
            if now - self._drawn_at >= _REDRAW_SECONDS or self.done >= self.total:
                self._drawn_at = now
                self._draw(now)

    def render(self, now: float | None = None) -> str:
        """The bar's current text, without the carriage return."""
        elapsed = max((now if now is not None else time.monotonic()) - self._started, 1e-9)
        fraction = min(self.done / self.total, 1.0) if self.total else 1.0
        filled = int(fraction * _WIDTH)
        digits = len(str(self.total))
        return (
            f"[{'#' * filled}{'.' * (_WIDTH - filled)}] {self.done:>{digits}}/{self.total} {self.label}"
            f" {fraction:4.0%} {self.done / elapsed:7.1f}/s"
        )

    def _draw(self, now: float) -> None:
        if self.enabled:
            self.stream.write("\r" + self.render(now))
            self.stream.flush()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.enabled:
            with self._lock:
                self._draw(time.monotonic())
                self.stream.write("\n")
                self.stream.flush()

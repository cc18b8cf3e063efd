"""The one progress reporter of long transfers: build-product's uploads and publish's copies.

On a terminal it redraws one line in place; anywhere else (CI logs, pipes) it prints a line every
SSB_PROGRESS_INTERVAL seconds (default 5) and a closing line, and nothing at all with -q.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from typing import TextIO

from .vocabulary.text import printable

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_ENV = "SSB_PROGRESS_INTERVAL"  # seconds between progress lines off a terminal
DEFAULT_PROGRESS_INTERVAL = 5.0


def progress_interval() -> float:
    """Seconds between progress lines when stderr is not a terminal: $SSB_PROGRESS_INTERVAL, else 5."""
    raw = os.environ.get(PROGRESS_INTERVAL_ENV, "").strip()
    try:
        value = float(raw) if raw else DEFAULT_PROGRESS_INTERVAL
    except ValueError:
        return DEFAULT_PROGRESS_INTERVAL
    return value if math.isfinite(value) and value >= 0 else DEFAULT_PROGRESS_INTERVAL


class Progress:
    """The one progress reporter of long transfers (build-product uploads, publish's copies).

    Bytes, files, rate and time left on stderr: redrawn in place on a terminal; anywhere else (CI
    logs, pipes) one line every `interval` seconds (default $SSB_PROGRESS_INTERVAL, else 5 s),
    and a last line at close() if any was printed, so a job shorter than the interval prints
    nothing; nothing at all when quiet. Callable with a byte count; safe to share between threads.
    """

    def __init__(self, total: int, label: str, *, files: int = 0, stream: TextIO | None = None,
                 quiet: bool = False, interval: float | None = None) -> None:
        self.total, self.label, self.quiet, self.files = max(total, 1), printable(label), quiet, files
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval = progress_interval() if interval is None else interval
        self.done = 0
        self.files_done = 0
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._last_draw = self.started if not self.tty else 0.0
        self._printed = False
        self._closed = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __call__(self, n: int) -> None:
        with self._lock:
            self.done += n
            self._maybe_draw()

    def file_done(self) -> None:
        with self._lock:
            self.files_done += 1
            self._maybe_draw()

    def close(self) -> None:
        """The last line, ending the terminal's redrawn one; only if an earlier line was printed."""
        with self._lock:
            if not self._closed and not self.quiet and self._printed:
                self._write(self._line(), final=True)
            self._closed = True

    def _maybe_draw(self) -> None:
        if self.quiet or self._closed:
            return
        now = time.monotonic()
        if now - self._last_draw >= (0.1 if self.tty else self.interval):
            self._write(self._line(), final=False)
            self._last_draw = now

    def _line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.done / elapsed
        left = max(self.total - self.done, 0) / rate if rate > 0 else 0.0
        mib = 1024 * 1024
        files = f" {self.files_done}/{self.files} files" if self.files else ""
        return (f"{self.label}: {min(100 * self.done // self.total, 100):3d}% {self.done / mib:.1f}/"
                f"{self.total / mib:.1f} MiB{files} {rate / mib:.1f} MiB/s {left:.0f}s left")

    def _write(self, line: str, *, final: bool) -> None:
        if self.tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._printed = True

"""Download progress: a rich bar on a terminal, plain log lines otherwise (CI, Modal logs)."""

from __future__ import annotations

import logging
import sys
import time
from typing import Protocol, TextIO

logger = logging.getLogger("moondream_iac.weights")

LOG_INTERVAL_S = 10.0


class ProgressReporter(Protocol):
    """The interface the weights step sends download progress to."""

    def start(self, label: str, total_bytes: int, done_bytes: int) -> None: ...

    def update(self, done_bytes: int, current_file: str) -> None: ...

    def finish(self, done_bytes: int) -> None: ...


class QuietProgress:
    """Report nothing."""

    def start(self, label: str, total_bytes: int, done_bytes: int) -> None:
        pass

    def update(self, done_bytes: int, current_file: str) -> None:
        pass

    def finish(self, done_bytes: int) -> None:
        pass


class RateEstimator:
    """Bytes per second and seconds left, measured from the bytes fetched since start."""

    def __init__(self, total_bytes: int, done_bytes: int) -> None:
        self.total_bytes = total_bytes
        self.start_bytes = done_bytes
        self.start_time = time.monotonic()

    def rate(self, done_bytes: int) -> float:
        elapsed = time.monotonic() - self.start_time
        if elapsed <= 0:
            return 0.0
        return max(done_bytes - self.start_bytes, 0) / elapsed

    def seconds_left(self, done_bytes: int) -> float | None:
        rate = self.rate(done_bytes)
        if rate <= 0:
            return None
        return max(self.total_bytes - done_bytes, 0) / rate


class LogProgress:
    """Log a line at start, every ``interval_s`` seconds, and at the end."""

    def __init__(self, log: logging.Logger = logger, interval_s: float = LOG_INTERVAL_S) -> None:
        self.log = log
        self.interval_s = interval_s
        self.label = ""
        self.estimator: RateEstimator | None = None
        self.last_log = 0.0

    def start(self, label: str, total_bytes: int, done_bytes: int) -> None:
        self.label = label
        self.estimator = RateEstimator(total_bytes, done_bytes)
        self.last_log = time.monotonic()
        self.log.info(
            "%s: %s to download, %s already present",
            label, format_bytes(max(total_bytes - done_bytes, 0)), format_bytes(done_bytes),
        )

    def update(self, done_bytes: int, current_file: str) -> None:
        now = time.monotonic()
        if self.estimator is None or now - self.last_log < self.interval_s:
            return
        self.last_log = now
        self.log.info("%s: %s (%s)", self.label, self._status(done_bytes), current_file)

    def finish(self, done_bytes: int) -> None:
        if self.estimator is not None:
            self.log.info("%s: done, %s", self.label, self._status(done_bytes))

    def _status(self, done_bytes: int) -> str:
        estimator = self.estimator
        assert estimator is not None
        total = estimator.total_bytes
        percent = 100.0 * done_bytes / total if total else 100.0
        left = estimator.seconds_left(done_bytes)
        left_text = f"{left:.0f} s left" if left is not None else "time left unknown"
        return (
            f"{format_bytes(done_bytes)} of {format_bytes(total)} ({percent:.0f}%), "
            f"{format_bytes(estimator.rate(done_bytes))}/s, {left_text}"
        )


class RichProgress:
    """A rich progress bar with bytes, rate and time left, drawn on a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.bar = None
        self.task = None

    def start(self, label: str, total_bytes: int, done_bytes: int) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                                   TimeRemainingColumn, TransferSpeedColumn)

        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
            TransferSpeedColumn(), TimeRemainingColumn(),
            console=Console(file=self.stream), transient=False,
        )
        self.bar.start()
        self.task = self.bar.add_task(label, total=total_bytes, completed=done_bytes)

    def update(self, done_bytes: int, current_file: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=done_bytes)

    def finish(self, done_bytes: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=done_bytes)
            self.bar.stop()
            self.bar = None


def make_progress(stream: TextIO | None = None) -> ProgressReporter:
    """Return a rich bar when ``stream`` (stderr by default) is a terminal, else log lines."""
    stream = stream if stream is not None else sys.stderr
    if stream.isatty():
        return RichProgress(stream)
    ensure_log_handler(stream)
    return LogProgress()


def ensure_log_handler(stream: TextIO | None = None) -> None:
    """Send the weights logger's INFO lines to ``stream`` when no logging is configured.

    A program that configures logging itself (a handler on the root logger) keeps full
    control; this only avoids progress lines vanishing in a bare process.
    """
    if logging.getLogger().handlers or logger.handlers:
        return
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)


def format_bytes(count: float) -> str:
    """Format a byte count with a binary unit, for example ``3.6 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"

"""Run model calls on one worker thread, off the event loop.

The model is not thread-safe and a GPU runs one call at a time well, so every call for
a model goes through a single thread while the event loop keeps accepting requests. The
callers bound how many calls wait (see ``Runtime``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


class WorkerTimeoutError(Exception):
    """A call did not finish within its deadline."""


@dataclass
class Timing:
    """When a call was submitted, started and finished, in ``time.perf_counter`` seconds."""

    submitted: float
    started: float | None = None
    finished: float | None = None

    @property
    def queue_ms(self) -> float | None:
        if self.started is None:
            return None
        return (self.started - self.submitted) * 1000.0

    @property
    def model_ms(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return (self.finished - self.started) * 1000.0


class StreamHandle:
    """Events of one streaming call: ``("chunk", text)``, then ``("done", None)`` or ``("error", exc)``."""

    def __init__(self, timing: Timing) -> None:
        self.timing = timing
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.cancelled = threading.Event()
        self.future: concurrent.futures.Future[None] | None = None

    def cancel(self) -> None:
        """Stop the call: drop it from the queue, or stop reading its generator."""
        self.cancelled.set()
        if self.future is not None:
            self.future.cancel()


class ModelWorker:
    """A single model thread that runs submitted calls in order."""

    def __init__(self) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="moondream-model"
        )

    async def call(self, function: Callable[[], Any], *, timeout_s: float) -> tuple[Any, Timing]:
        """Run ``function`` on the model thread and return its result with its timing.

        Raises WorkerTimeoutError after ``timeout_s`` (a call still waiting is dropped
        from the queue), or whatever ``function`` raised.
        """
        timing = Timing(submitted=time.perf_counter())
        future = self._submit(function, timing)
        try:
            result = await asyncio.wait_for(asyncio.wrap_future(future), timeout_s)
        except TimeoutError:
            future.cancel()
            raise WorkerTimeoutError(f"the model call did not finish within {timeout_s:.1f} s") from None
        return result, timing

    def stream(self, produce: Callable[[], Iterator[str]]) -> StreamHandle:
        """Start a streaming call: ``produce`` returns the model's text generator.

        The generator is read on the model thread, and each piece is put on the
        handle's event queue.
        """
        loop = asyncio.get_running_loop()
        handle = StreamHandle(Timing(submitted=time.perf_counter()))

        def push(kind: str, value: Any) -> None:
            loop.call_soon_threadsafe(handle.events.put_nowait, (kind, value))

        def run_stream() -> None:
            try:
                for piece in produce():
                    if handle.cancelled.is_set():
                        return
                    push("chunk", piece)
                push("done", None)
            except Exception as error:  # noqa: BLE001 - sent to the client as an event
                push("error", error)

        handle.future = self._submit(run_stream, handle.timing)
        return handle

    def shutdown(self) -> None:
        """Drop the waiting calls; the running call finishes in the background."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _submit(self, function: Callable[[], Any], timing: Timing) -> concurrent.futures.Future[Any]:
        def timed() -> Any:
            timing.started = time.perf_counter()
            try:
                return function()
            finally:
                timing.finished = time.perf_counter()

        return self._executor.submit(timed)

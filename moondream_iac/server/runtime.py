"""The state one server process shares between requests: the model, its loader, the worker."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from moondream_iac.server.api_error import ApiError, unavailable
from moondream_iac.server.images import ImageCache
from moondream_iac.server.settings import ServerSettings
from moondream_iac.server.worker import ModelWorker

logger = logging.getLogger("moondream_iac.server")

LOADING_RETRY_AFTER_S = 5
FAILED_RETRY_AFTER_S = 30
QUEUE_FULL_RETRY_AFTER_S = 1
# Requests past the admission check that may decode their image and go to the model at
# once: one running, the others decoded and ready. This bounds the memory that decoded
# images take (up to 48 MB each at 16 megapixels) while keeping the model thread fed.
PIPELINE_DEPTH = 3
# Request bodies read at once, per place in the queue. Bodies are read before a request
# joins the queue, so a slow sender takes no queue place, but their memory still needs a bound.
READING_PER_QUEUE_PLACE = 4


class Runtime:
    """The model (once loaded), the model worker, the image cache, the queue and the load status.

    ``in_flight`` counts admitted API requests, from the admission check to the last
    byte of the response. ``reading`` counts requests whose body is being read, before
    admission. Both are read and written on the event loop only.
    """

    def __init__(self, settings: ServerSettings, model: Any = None) -> None:
        self.settings = settings
        self.model = model
        self.load_error: str | None = None
        self.load_seconds: float | None = None
        self.started = time.monotonic()
        self.worker = ModelWorker()
        self.image_cache = ImageCache(settings.image_cache_size)
        self.pipeline_slots = asyncio.Semaphore(PIPELINE_DEPTH)
        self.decode_executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=PIPELINE_DEPTH, thread_name_prefix="moondream-decode"
        )
        self.in_flight = 0
        self.reading = 0
        self.max_reading = READING_PER_QUEUE_PLACE * (settings.queue_size + 1)

    @property
    def waiting(self) -> int:
        """Admitted requests not yet on the model (the running one is counted as one)."""
        return max(0, self.in_flight - 1)

    def check_queue(self) -> None:
        """Raise a 503 when ``queue_size`` requests already wait for the model."""
        if self.in_flight > self.settings.queue_size:
            raise unavailable(
                f"the server is busy: {self.settings.queue_size} requests are already waiting "
                "for the model; retry shortly",
                QUEUE_FULL_RETRY_AFTER_S,
            )

    def admit(self) -> None:
        """Count a new request in, or raise a 503 when the queue is full."""
        self.check_queue()
        self.in_flight += 1

    def release(self) -> None:
        """Count a finished request out."""
        self.in_flight -= 1

    def start_reading(self) -> None:
        """Count a body read in, or raise a 503 when ``max_reading`` bodies are being read."""
        if self.reading >= self.max_reading:
            raise unavailable(
                f"the server is busy: {self.reading} request bodies are being received; retry shortly",
                QUEUE_FULL_RETRY_AFTER_S,
            )
        self.reading += 1

    def finish_reading(self) -> None:
        """Count a finished body read out."""
        self.reading -= 1

    def shutdown(self) -> None:
        """Drop the waiting model calls and image decodes; running ones finish in the background."""
        self.worker.shutdown()
        self.decode_executor.shutdown(wait=False, cancel_futures=True)

    @property
    def ready(self) -> bool:
        return self.model is not None

    def require_model(self) -> Any:
        """Return the model, or raise a 503 while it loads or after its load failed."""
        if self.model is not None:
            return self.model
        if self.load_error is not None:
            raise unavailable(
                "the model failed to load; GET /v1/health shows the error", FAILED_RETRY_AFTER_S
            )
        raise unavailable("the model is still loading; retry shortly", LOADING_RETRY_AFTER_S)

    def start_loading(self, loader: Callable[[], Any]) -> threading.Thread:
        """Run ``loader`` on a background thread; requests get 503 until it returns."""
        thread = threading.Thread(
            target=self._load, args=(loader,), name="moondream-model-loader", daemon=True
        )
        thread.start()
        return thread

    def _load(self, loader: Callable[[], Any]) -> None:
        started = time.perf_counter()
        logger.info("loading the model from %s", self.settings.model_dir)
        try:
            model = loader()
        except BaseException as error:  # noqa: BLE001 - reported in /v1/health, never re-raised
            self.load_error = self.redact(f"{type(error).__name__}: {error}")
            logger.error("failed to load the model from %s: %s", self.settings.model_dir, self.load_error)
            return
        self.load_seconds = time.perf_counter() - started
        self.model = model
        logger.info("the model is ready after %.2f s", self.load_seconds)

    def redact(self, text: str) -> str:
        """Replace the API key in ``text``, so error text can be shown and logged."""
        key = self.settings.api_key
        if key:
            text = text.replace(key, "[redacted]")
        return text

    def health(self) -> dict[str, Any]:
        """Return the body of ``/v1/health``: status, identity of the model and the runtime."""
        settings = self.settings
        status = "loading"
        if self.ready:
            status = "ready"
        elif self.load_error is not None:
            status = "failed"
        return {
            "status": status,
            "live": True,
            "ready": self.ready,
            "error": self.load_error,
            "model_repo": settings.model_repo,
            "revision": settings.revision,
            "dtype": self._model_dtype(),
            "device": self._model_device(),
            "spec_hash": settings.spec_hash,
            "tool_version": settings.tool_version,
            "auth_mode": settings.auth_mode,
            "queue": {
                "waiting": self.waiting,
                "in_flight": self.in_flight,
                "size": settings.queue_size,
                "reading": self.reading,
            },
            "load_seconds": self.load_seconds,
            "uptime_seconds": round(time.monotonic() - self.started, 3),
        }

    def _model_dtype(self) -> str:
        dtype = getattr(self.model, "dtype", None)
        if dtype is None:
            return self.settings.dtype
        return str(dtype).removeprefix("torch.")

    def _model_device(self) -> str:
        device = getattr(self.model, "device", None)
        return self.settings.device if device is None else str(device)


def check_api_key(settings: ServerSettings, headers: Any) -> None:
    """Raise ApiError 401 unless the request carries the configured key.

    The key is accepted in ``X-Moondream-Auth`` (what the official clients send) or as
    ``Authorization: Bearer``. In ``none`` and ``proxy`` modes nothing is checked, and the
    empty ``X-Moondream-Auth`` that the npm client always sends is ignored.
    """
    import hmac

    if settings.auth_mode != "api_key":
        return
    expected = (settings.api_key or "").encode("utf-8")
    candidates = [headers.get("x-moondream-auth") or ""]
    authorization = headers.get("authorization") or ""
    if authorization[:7].lower() == "bearer ":
        candidates.append(authorization[7:].strip())

    matched = False
    for candidate in candidates:
        # Compare every candidate, so the time taken does not depend on which one matched.
        matched |= hmac.compare_digest(candidate.encode("utf-8"), expected)
    if not matched:
        raise ApiError(
            401,
            "missing or invalid API key: send it in the X-Moondream-Auth header "
            "or as Authorization: Bearer <key>",
            headers={"WWW-Authenticate": "Bearer"},
        )

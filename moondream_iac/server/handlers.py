"""The four API operations: check the body, prepare the image, call the model, build the response."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from moondream_iac.server.api_error import ApiError, unavailable
from moondream_iac.server.images import decode_image, image_bytes_from_url
from moondream_iac.server.payloads import parse_caption, parse_query, parse_region
from moondream_iac.server.runtime import Runtime
from moondream_iac.server.worker import StreamHandle, Timing, WorkerTimeoutError

logger = logging.getLogger("moondream_iac.server")

TIMEOUT_RETRY_AFTER_S = 5


@dataclass
class CallContext:
    """One request's deadline and the figures its log line reports."""

    request_id: str
    deadline: float
    timing: Timing | None = None
    image_ms: float | None = None
    image: "PreparedImage | None" = None
    cache_hit: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # The image decode running on a decode thread, which keeps the pipeline slot until it ends.
    decoding: asyncio.Future[Any] | None = None

    def remaining_s(self) -> float:
        return max(0.001, self.deadline - time.perf_counter())


@dataclass
class StreamResult:
    """A started stream: the text events to send, produced while the model runs."""

    events: AsyncIterator[bytes]
    cancel: Callable[[], None]


@dataclass
class PreparedImage:
    """An image ready for the model: encoded (cache hit) or decoded (cache miss)."""

    key: str
    encoded: Any = None
    decoded: Any = None
    encode_ms: float | None = None


async def point(runtime: Runtime, body: dict[str, Any], context: CallContext) -> dict[str, Any]:
    request = parse_region(body)
    model = runtime.require_model()
    settings = request.settings or None

    async with _pipeline_slot(runtime, context):
        image = await _prepare_image(runtime, request.image_url, context)

        def run() -> Any:
            return model.point(_encoded(runtime, model, image), request.object, settings=settings)

        result = await _call(runtime, run, context)

    points = [{"x": _unit(item["x"]), "y": _unit(item["y"])} for item in result["points"]]
    return {"points": points}


async def detect(runtime: Runtime, body: dict[str, Any], context: CallContext) -> dict[str, Any]:
    request = parse_region(body)
    model = runtime.require_model()
    settings = request.settings or None

    async with _pipeline_slot(runtime, context):
        image = await _prepare_image(runtime, request.image_url, context)

        def run() -> Any:
            return model.detect(_encoded(runtime, model, image), request.object, settings=settings)

        result = await _call(runtime, run, context)

    objects = [
        {name: _unit(item[name]) for name in ("x_min", "y_min", "x_max", "y_max")}
        for item in result["objects"]
    ]
    return {"objects": objects}


async def caption(runtime: Runtime, body: dict[str, Any], context: CallContext) -> dict[str, Any] | StreamResult:
    request = parse_caption(body)
    model = runtime.require_model()
    settings = request.settings or None

    async with _pipeline_slot(runtime, context):
        image = await _prepare_image(runtime, request.image_url, context)

        def run(stream: bool) -> Any:
            encoded = _encoded(runtime, model, image)
            return model.caption(encoded, length=request.length, stream=stream, settings=settings)

        if request.stream:
            return await _start_stream(runtime, lambda: run(True)["caption"], context)
        result = await _call(runtime, lambda: run(False), context)

    return {"caption": str(result["caption"])}


async def query(runtime: Runtime, body: dict[str, Any], context: CallContext) -> dict[str, Any] | StreamResult:
    request = parse_query(body)
    model = runtime.require_model()
    settings = request.settings or None
    # NOTE: query's reasoning parameter is known from the 2025-06-21 model code only.
    # It is passed only when requested, so model code without it still serves plain queries.
    options: dict[str, Any] = {"stream": False, "settings": settings}
    if request.reasoning:
        if not _accepts_keyword(model.query, "reasoning"):
            raise ApiError(
                400,
                "invalid field 'reasoning': this model revision does not support reasoning; "
                "send reasoning: false or deploy revision 2025-06-21 or later",
            )
        options["reasoning"] = True

    async with _pipeline_slot(runtime, context):
        image = None
        if request.image_url is not None:
            image = await _prepare_image(runtime, request.image_url, context)

        def run(stream: bool) -> Any:
            encoded = _encoded(runtime, model, image) if image is not None else None
            return model.query(encoded, request.question, **{**options, "stream": stream})

        if request.stream:
            reasoning: dict[str, Any] = {}

            def produce() -> Iterator[str]:
                result = run(True)
                if "reasoning" in result:
                    reasoning["reasoning"] = result["reasoning"]
                return result["answer"]

            return await _start_stream(runtime, produce, context, final_fields=reasoning)
        result = await _call(runtime, lambda: run(False), context)

    answer: dict[str, Any] = {"answer": str(result["answer"])}
    if result.get("reasoning") is not None:
        answer["reasoning"] = result["reasoning"]
    return answer


OPERATIONS: dict[str, Callable[..., Any]] = {
    "point": point,
    "detect": detect,
    "caption": caption,
    "query": query,
}


def _accepts_keyword(method: Callable[..., Any], name: str) -> bool:
    try:
        parameters = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return True
    if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values()):
        return True
    return name in parameters


@asynccontextmanager
async def _pipeline_slot(runtime: Runtime, context: CallContext) -> AsyncIterator[None]:
    """Hold one of the few slots for decoding an image and calling the model.

    A stream gives its slot back once its first piece arrives, when the decoded image
    is no longer needed. A decode still running when the request ends keeps the slot
    until it finishes, so at most ``PIPELINE_DEPTH`` decodes run at once.
    """
    try:
        await asyncio.wait_for(runtime.pipeline_slots.acquire(), context.remaining_s())
    except TimeoutError:
        raise unavailable(
            "the request timed out waiting for the model; retry shortly", TIMEOUT_RETRY_AFTER_S
        ) from None
    try:
        yield
    finally:
        decoding = context.decoding
        if decoding is None or decoding.done():
            runtime.pipeline_slots.release()
        else:
            decoding.add_done_callback(lambda _: runtime.pipeline_slots.release())


async def _prepare_image(runtime: Runtime, image_url: str, context: CallContext) -> PreparedImage:
    """Decode base64, look up the cache, and decode the image on a miss, on a decode thread.

    Raises a 503 when the request deadline passes first.
    NOTE: a Python thread cannot be stopped, so a decode past the deadline runs to its
    end. The JPEG scan limit and the pixel limit bound how long that takes.
    """
    started = time.perf_counter()
    loop = asyncio.get_running_loop()
    context.decoding = loop.run_in_executor(runtime.decode_executor, _prepare_image_now, runtime, image_url)
    context.decoding.add_done_callback(_retrieve_exception)

    done, _ = await asyncio.wait({context.decoding}, timeout=context.remaining_s())
    if not done:
        logger.warning(
            "request %s: the image decode passed the request deadline and keeps running", context.request_id
        )
        raise unavailable(
            "the request timed out while decoding the image; retry shortly", TIMEOUT_RETRY_AFTER_S
        )
    image = context.decoding.result()
    context.image_ms = (time.perf_counter() - started) * 1000.0
    context.cache_hit = image.encoded is not None
    context.image = image
    return image


def _retrieve_exception(future: asyncio.Future[Any]) -> None:
    """Mark the exception of an abandoned decode as seen, so asyncio does not log it as lost."""
    if not future.cancelled():
        future.exception()


def _prepare_image_now(runtime: Runtime, image_url: str) -> PreparedImage:
    image_bytes = image_bytes_from_url(image_url)
    encoded = runtime.image_cache.get(image_bytes.sha256)
    if encoded is not None:
        return PreparedImage(key=image_bytes.sha256, encoded=encoded)
    decoded = decode_image(image_bytes, runtime.settings.max_image_pixels)
    return PreparedImage(key=image_bytes.sha256, decoded=decoded)


def _encoded(runtime: Runtime, model: Any, image: PreparedImage) -> Any:
    """Return the encoded image, encoding and caching it first on a miss. Runs on the model thread."""
    if image.encoded is None:
        started = time.perf_counter()
        image.encoded = model.encode_image(image.decoded)
        image.encode_ms = (time.perf_counter() - started) * 1000.0
        image.decoded = None
        runtime.image_cache.put(image.key, image.encoded)
    return image.encoded


async def _call(runtime: Runtime, function: Callable[[], Any], context: CallContext) -> Any:
    try:
        result, timing = await runtime.worker.call(function, timeout_s=context.remaining_s())
    except WorkerTimeoutError as error:
        raise unavailable(f"the request timed out: {error}; retry shortly", TIMEOUT_RETRY_AFTER_S) from None
    context.timing = timing
    return result


async def _start_stream(
    runtime: Runtime,
    produce: Callable[[], Iterator[str]],
    context: CallContext,
    *,
    final_fields: dict[str, Any] | None = None,
) -> StreamResult:
    """Start the stream and wait for its first event, so early errors still get a status."""
    handle = runtime.worker.stream(produce)
    context.timing = handle.timing

    first = await _next_event(handle, context)
    if first[0] == "error":
        raise first[1]
    return StreamResult(events=_sse_events(handle, first, context, final_fields or {}), cancel=handle.cancel)


async def _next_event(handle: StreamHandle, context: CallContext) -> tuple[str, Any]:
    try:
        return await asyncio.wait_for(handle.events.get(), context.remaining_s())
    except TimeoutError:
        handle.cancel()
        raise unavailable(
            "the request timed out waiting for the model; retry shortly", TIMEOUT_RETRY_AFTER_S
        ) from None


async def _sse_events(
    handle: StreamHandle,
    first: tuple[str, Any],
    context: CallContext,
    final_fields: dict[str, Any],
) -> AsyncIterator[bytes]:
    """Yield ``data: {"chunk": ...}`` events, then ``{"completed": true}`` or ``{"error": ...}``.

    The clients do not check the status of a streamed response, so an error after the
    stream started is sent as an event without ``completed``.
    """
    event = first
    try:
        while True:
            kind, value = event
            if kind == "chunk":
                yield _sse({"chunk": str(value)})
            elif kind == "done":
                yield _sse({"completed": True, "request_id": context.request_id, **final_fields})
                return
            else:
                context.extra["stream_error"] = f"{type(value).__name__}: {value}"
                logger.error("request %s: the model failed during the stream: %s", context.request_id, value)
                yield _sse({"error": "the model failed while streaming", "request_id": context.request_id})
                return
            try:
                event = await asyncio.wait_for(handle.events.get(), context.remaining_s())
            except TimeoutError:
                context.extra["stream_error"] = "timed out"
                yield _sse({"error": "the request timed out while streaming", "request_id": context.request_id})
                return
    finally:
        handle.cancel()


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode("utf-8") + b"\n\n"


def _unit(value: Any) -> float:
    """Clamp a normalised coordinate to 0..1."""
    return min(1.0, max(0.0, float(value)))

"""The FastAPI application that serves the Moondream HTTP API.

Routes: ``POST /v1/point``, ``/v1/detect``, ``/v1/query``, ``/v1/caption`` and
``GET /v1/health``. The npm client joins its endpoint and the route name as plain
strings, so ``/point``, ``/v1//point``, ``//point`` and forms with a trailing slash reach
the same handler.

Every response carries ``X-Request-Id``; JSON bodies also carry ``request_id``. A
successful JSON response carries ``Server-Timing: queue;dur=…, model;dur=…`` in
milliseconds, plus ``encode;dur=…`` (part of the model time) when the image missed the
cache. Errors are ``{"error": "..."}`` with a 4xx status (408 for a body that does not
arrive within ``body_timeout_s``), or 503 with ``Retry-After`` for a loading model, a full
queue or a timeout, because Magnitude retries only on 429, 503 and 524.

Each request logs one JSON line on the ``moondream_iac.server.requests`` logger: request
id, route, status, total, queue wait, image decode and model times, and whether the
encoded image came from the cache. Image bytes, prompts and keys are never logged.
"""

import functools
import json
import logging
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from moondream_iac.server import handlers
from moondream_iac.server.api_error import ApiError
from moondream_iac.server.payloads import parse_json_object
from moondream_iac.server.runtime import Runtime, check_api_key
from moondream_iac.server.settings import ServerSettings

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from starlette.responses import Response

logger = logging.getLogger("moondream_iac.server")
request_logger = logging.getLogger("moondream_iac.server.requests")

API_ROUTES = ("point", "detect", "query", "caption")
CANONICAL_NAMES = frozenset((*API_ROUTES, "health"))


def canonical_path(path: str) -> str:
    """Map ``/point``, ``/v1//point/`` and the like to ``/v1/point``; leave other paths alone."""
    segments = [segment for segment in path.split("/") if segment]
    if segments[:1] == ["v1"]:
        segments = segments[1:]
    if len(segments) == 1 and segments[0] in CANONICAL_NAMES:
        return "/v1/" + segments[0]
    return path


class CanonicalPathMiddleware:
    """ASGI middleware that rewrites the request path with ``canonical_path`` before routing."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope = dict(scope)
            scope["path"] = canonical_path(scope["path"])
        await self.app(scope, receive, send)


def create_app(
    settings: ServerSettings,
    model: Any = None,
    *,
    loader: Callable[[], Any] | None = None,
) -> "FastAPI":
    """Build the app for a loaded ``model``, or for a ``loader`` run in the background at startup.

    Until the loader returns, the API routes return 503 with ``Retry-After`` and
    ``/v1/health`` reports ``ready: false``. A failed load stays visible in health.
    """
    from fastapi import FastAPI
    from starlette.exceptions import HTTPException

    if model is None and loader is None:
        raise ValueError("create_app needs a loaded model or a loader")
    runtime = Runtime(settings, model)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if runtime.model is None and loader is not None:
            runtime.start_loading(loader)
        yield
        runtime.shutdown()

    app = FastAPI(
        title="Moondream API (moondream_iac)",
        version=settings.tool_version,
        lifespan=lifespan,
        redirect_slashes=False,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.runtime = runtime
    app.add_middleware(CanonicalPathMiddleware)

    @app.exception_handler(HTTPException)
    async def http_error(request, error):
        message = {404: "not found", 405: "method not allowed"}.get(error.status_code, str(error.detail))
        request_id = _new_request_id()
        text = f"{message}: {request.method} {request.url.path[:200]}"
        record = {"event": "request", "request_id": request_id, "status": error.status_code, "error": text}
        request_logger.info(json.dumps(record))
        return _error_response(ApiError(error.status_code, text), request_id)

    @app.get("/v1/health")
    async def health():
        body = runtime.health()
        return _json_response(200 if runtime.ready else 503, body, _new_request_id())

    for name in API_ROUTES:
        app.add_api_route(f"/v1/{name}", _api_endpoint(runtime, name), methods=["POST"], name=name)
    return app


def _api_endpoint(runtime: Runtime, name: str) -> Callable[..., Any]:
    # FastAPI reads the parameter annotation to pass the Request, so it must be the
    # class itself, imported here to keep fastapi out of module import time.
    from starlette.requests import Request

    operation = handlers.OPERATIONS[name]

    async def endpoint(request: Request):
        return await _serve(runtime, name, operation, request)

    endpoint.__name__ = f"post_{name}"
    return endpoint


async def _serve(runtime: Runtime, name: str, operation: Callable[..., Any], request: "Request") -> "Response":
    started = time.perf_counter()
    context = handlers.CallContext(
        request_id=_new_request_id(), deadline=started + runtime.settings.request_timeout_s
    )
    admitted = False
    try:
        check_api_key(runtime.settings, request.headers)
        runtime.require_model()
        # The body is read before the request joins the queue, so a client that sends it
        # slowly takes no queue place. A full queue still answers 503 before the read.
        runtime.check_queue()
        raw = await _read_body_in_time(runtime, request, context)
        runtime.admit()
        admitted = True
        body = parse_json_object(raw)
        result = await operation(runtime, body, context)
    except ApiError as error:
        context.extra["error"] = error.message
        response = _error_response(error, context.request_id)
    except Exception as error:  # noqa: BLE001 - any other failure is a 500 with a log line
        logger.error(
            "request %s to /v1/%s failed with an unexpected error: %s",
            context.request_id, name, runtime.redact(f"{type(error).__name__}: {error}"),
        )
        message = (
            "internal error: the server failed on this request; "
            f"its log has the cause under request id {context.request_id}"
        )
        response = _error_response(ApiError(500, message), context.request_id)
    else:
        if isinstance(result, handlers.StreamResult):
            # The stream counts as in flight until its last event is sent.
            admitted = False
            return _stream_response(runtime, name, result, context, started)
        response = _json_response(
            200, {**result, "request_id": context.request_id}, context.request_id, _server_timing(context)
        )
    finally:
        if admitted:
            runtime.release()

    _log_request(runtime, name, response.status_code, context, started)
    return response


async def _read_body_in_time(runtime: Runtime, request: "Request", context: handlers.CallContext) -> bytes:
    """Read the body within ``body_timeout_s`` and the request deadline, or raise ApiError 408."""
    import asyncio

    from starlette.requests import ClientDisconnect

    settings = runtime.settings
    timeout_s = min(settings.body_timeout_s, context.remaining_s())
    runtime.start_reading()
    try:
        return await asyncio.wait_for(_read_body(request, settings.max_body_bytes), timeout_s)
    except TimeoutError:
        raise ApiError(
            408,
            f"the request body did not arrive within {timeout_s:.1f} s; send the whole body at once",
            headers={"Connection": "close"},
        ) from None
    except ClientDisconnect:
        # The client has gone and gets no response, but the log line records a client error.
        raise ApiError(400, "the client closed the connection before sending the whole body") from None
    finally:
        runtime.finish_reading()


async def _read_body(request: "Request", limit: int) -> bytes:
    """Read the body, rejecting it with 413 once it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, f"invalid Content-Length header {declared[:20]!r}")
        if int(declared) > limit:
            raise ApiError(413, _too_large(int(declared), limit))

    chunks = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise ApiError(413, _too_large(received, limit))
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, limit: int) -> str:
    return (
        f"the request body is {size} bytes or more, above the limit of {limit} bytes; "
        "send a smaller image"
    )


def _stream_response(
    runtime: Runtime, name: str, result: handlers.StreamResult, context: handlers.CallContext, started: float
) -> "Response":
    def close() -> None:
        result.cancel()
        runtime.release()
        _log_request(runtime, name, 200, context, started, stream=True)

    headers = {"X-Request-Id": context.request_id, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return _closing_stream_class()(result.events, media_type="text/event-stream", headers=headers, on_close=close)


@functools.cache
def _closing_stream_class() -> type:
    """Return a StreamingResponse that calls ``on_close`` once it is sent, failed or cancelled.

    A generator's ``finally`` is not enough: a client that disconnects before the first
    event leaves the generator unstarted, and its cleanup never runs.
    """
    from starlette.responses import StreamingResponse

    class ClosingStreamingResponse(StreamingResponse):
        def __init__(self, content: Any, *, on_close: Callable[[], None], **options: Any) -> None:
            super().__init__(content, **options)
            self._on_close = on_close

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            try:
                await super().__call__(scope, receive, send)
            finally:
                self._on_close()

    return ClosingStreamingResponse


def _json_response(
    status: int, body: dict[str, Any], request_id: str, headers: dict[str, str] | None = None
) -> "Response":
    from starlette.responses import Response

    content = json.dumps(body, separators=(",", ":")).encode("utf-8")
    all_headers = {"X-Request-Id": request_id, **(headers or {})}
    return Response(content, status_code=status, media_type="application/json", headers=all_headers)


def _error_response(error: ApiError, request_id: str) -> "Response":
    body = {"error": error.message, "request_id": request_id}
    return _json_response(error.status, body, request_id, error.headers)


def _server_timing(context: handlers.CallContext) -> dict[str, str]:
    """Return a ``Server-Timing`` header: queue wait, model time and its image encoding, in ms.

    ``model`` includes ``encode``, which appears only when the image missed the cache.
    """
    timing = context.timing
    if timing is None or timing.queue_ms is None or timing.model_ms is None:
        return {}
    value = f"queue;dur={timing.queue_ms:.3f}, model;dur={timing.model_ms:.3f}"
    encode_ms = context.image.encode_ms if context.image is not None else None
    if encode_ms is not None:
        value += f", encode;dur={encode_ms:.3f}"
    return {"Server-Timing": value}


def _new_request_id() -> str:
    return uuid.uuid4().hex


def _log_request(
    runtime: Runtime,
    name: str,
    status: int,
    context: handlers.CallContext,
    started: float,
    *,
    stream: bool = False,
) -> None:
    """Log one JSON line per request: ids, status and timings, never image bytes or keys."""
    timing = context.timing
    record: dict[str, Any] = {
        "event": "request",
        "request_id": context.request_id,
        "route": f"/v1/{name}",
        "status": status,
        "stream": stream,
        "total_ms": round((time.perf_counter() - started) * 1000.0, 2),
        "queue_wait_ms": _round(timing.queue_ms if timing else None),
        "model_ms": _round(timing.model_ms if timing else None),
        "image_ms": _round(context.image_ms),
        "encode_ms": _round(context.image.encode_ms if context.image is not None else None),
        "image_cache_hit": context.cache_hit,
        **context.extra,
    }
    request_logger.info(runtime.redact(json.dumps(record)))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)

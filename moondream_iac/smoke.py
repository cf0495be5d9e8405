"""The post-deploy smoke test: one real request per Moondream route, timed.

The test image is generated with Pillow (a dark square on a light background), so the
check needs no files. Each route must return 200 with its documented body shape;
anything else fails the route. ``get_health`` is here too: plan, apply and status read
``/v1/health`` through it.
"""

from __future__ import annotations

import base64
import io
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from moondream_iac.spec.schema import DeploySpec

ROUTES = ("point", "detect", "query", "caption")
AUTH_HEADER = "X-Moondream-Auth"
PROXY_TOKEN_ID_ENV = "MODAL_PROXY_TOKEN_ID"
PROXY_TOKEN_SECRET_ENV = "MODAL_PROXY_TOKEN_SECRET"
# The ``status`` get_health reports when the endpoint rejects the credentials.
UNAUTHORIZED = "unauthorized"
# Body field each route must return, and its JSON type.
EXPECTED_FIELDS: dict[str, tuple[str, type]] = {
    "point": ("points", list),
    "detect": ("objects", list),
    "query": ("answer", str),
    "caption": ("caption", str),
}


def smoke_image_url(size: int = 96) -> str:
    """Return a PNG data URL of a dark square on a light background, ``size`` pixels wide."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), (240, 240, 240))
    ImageDraw.Draw(image).rectangle((size // 4, size // 4, size * 3 // 4, size * 3 // 4),
                                    fill=(30, 60, 200))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def request_bodies(image_url: str) -> dict[str, dict[str, Any]]:
    """Return the request body sent to each route."""
    return {
        "point": {"image_url": image_url, "object": "square"},
        "detect": {"image_url": image_url, "object": "square"},
        "query": {"image_url": image_url, "question": "What color is the square?",
                  "stream": False},
        "caption": {"image_url": image_url, "length": "short", "stream": False},
    }


def auth_headers(api_key: str | None) -> dict[str, str]:
    """Return the request headers that carry ``api_key``, or none when it is unset."""
    return {AUTH_HEADER: api_key} if api_key else {}


def request_headers(spec: DeploySpec, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the headers a client of ``spec``'s endpoint sends to pass its auth mode.

    api_key: the key from the variable ``auth.key_env``. proxy: Modal's proxy auth token
    from ``MODAL_PROXY_TOKEN_ID`` and ``MODAL_PROXY_TOKEN_SECRET`` (names this tool
    chose; Modal reads the token from the ``Modal-Key`` and ``Modal-Secret`` headers).
    Variables that are unset are left out.
    """
    environ = os.environ if environ is None else environ
    if spec.auth.mode == "api_key":
        return auth_headers(environ.get(spec.auth.key_env) or None)
    if spec.auth.mode == "proxy":
        headers = {"Modal-Key": environ.get(PROXY_TOKEN_ID_ENV, ""),
                   "Modal-Secret": environ.get(PROXY_TOKEN_SECRET_ENV, "")}
        return {name: value for name, value in headers.items() if value}
    return {}


def missing_credentials(spec: DeploySpec, environ: Mapping[str, str] | None = None) -> str | None:
    """Return an error message when the variables that ``request_headers`` reads are unset."""
    environ = os.environ if environ is None else environ
    if spec.auth.mode == "api_key":
        names = [spec.auth.key_env]
    elif spec.auth.mode == "proxy":
        names = [PROXY_TOKEN_ID_ENV, PROXY_TOKEN_SECRET_ENV]
    else:
        return None
    unset = [name for name in names if not environ.get(name)]
    if not unset:
        return None
    exports = " and ".join(f"{name}=<value>" for name in unset)
    return (f"auth.mode is {spec.auth.mode} but the environment variable"
            f"{'s' if len(unset) > 1 else ''} {' and '.join(unset)} "
            f"{'is' if len(unset) == 1 else 'are'} not set, and apply's smoke test needs "
            f"{'it' if len(unset) == 1 else 'them'}; export {exports} and rerun, or set "
            "auth.mode: none in deploy.yaml")


def run_smoke_test(base_url: str, *, api_key: str | None = None,
                   headers: Mapping[str, str] | None = None,
                   timeout_s: float = 60.0) -> dict[str, Any]:
    """POST one request to each route under ``base_url`` (ending in /v1); return the results.

    The result has ``ok`` (every route passed), ``routes`` (per route: ``ok``,
    ``status``, ``latency_ms``, ``error``) and ``total_ms``. ``headers`` (from
    ``request_headers``) are sent with each request. Errors never contain a credential,
    because they come from the status code and the body shape only.
    """
    import httpx

    bodies = request_bodies(smoke_image_url())
    routes: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    sent = {**auth_headers(api_key), **(headers or {})}
    with httpx.Client(timeout=timeout_s, headers=sent) as client:
        for route in ROUTES:
            routes[route] = _call_route(client, f"{base_url.rstrip('/')}/{route}", route,
                                        bodies[route])
    return {
        "ok": all(result["ok"] for result in routes.values()),
        "routes": routes,
        "total_ms": round((time.perf_counter() - started) * 1000, 1),
    }


def _call_route(client: Any, url: str, route: str, body: Mapping[str, Any]) -> dict[str, Any]:
    import httpx

    started = time.perf_counter()
    try:
        response = client.post(url, json=body)
    except httpx.HTTPError as error:
        return _result(False, None, started, f"request failed: {type(error).__name__}")

    if response.status_code != 200:
        return _result(False, response.status_code, started,
                       f"expected status 200, got {response.status_code}")
    ok, error = _check_body(route, response)
    return _result(ok, response.status_code, started, error)


def _check_body(route: str, response: Any) -> tuple[bool, str | None]:
    field, kind = EXPECTED_FIELDS[route]
    try:
        body = response.json()
    except ValueError:
        return False, "the response body is not JSON"
    if not isinstance(body, dict) or not isinstance(body.get(field), kind):
        return False, f"the response has no {field!r} {kind.__name__}"
    return True, None


def _result(ok: bool, status: int | None = None, started: float = 0.0,
            error: str | None = None) -> dict[str, Any]:
    return {
        "ok": ok,
        "status": status,
        "latency_ms": round((time.perf_counter() - started) * 1000, 1),
        "error": error,
    }


def get_health(base_url: str, *, api_key: str | None = None,
               headers: Mapping[str, str] | None = None,
               timeout_s: float = 5.0) -> dict[str, Any] | None:
    """Return the JSON of ``GET <base_url>/health``, or None when the request fails.

    A 503 with a JSON body (the model is still loading) is returned like a 200, so a
    caller can read ``ready`` and ``error``. A 401 or 403 returns a document with
    ``status`` ``unauthorized``: the endpoint runs, but these credentials cannot read it.
    """
    import httpx

    sent = {**auth_headers(api_key), **(headers or {})}
    try:
        response = httpx.get(f"{base_url.rstrip('/')}/health", headers=sent, timeout=timeout_s)
    except httpx.HTTPError:
        return None
    if response.status_code in (401, 403):
        return {"status": UNAUTHORIZED, "live": True, "ready": False, "error": None}
    if response.status_code not in (200, 503):
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None

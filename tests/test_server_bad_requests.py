"""Bad requests get a 4xx JSON error naming the problem, and the server keeps serving."""

from __future__ import annotations

import json
import logging
import struct
import zlib
from io import BytesIO
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from PIL import Image

from moondream_iac.server.app import create_app
from moondream_iac.server.settings import ServerSettings
from tests.server_cases import bare_base64, data_url, encode, ui_image

pytestmark = pytest.mark.usefixtures("hub_libraries_imported")

MAX_BODY_BYTES = 512 * 1024
MAX_IMAGE_PIXELS = 1_000_000

GOOD_PNG = encode(ui_image(200, 120, seed=21))
GOOD_IMAGE_URL = data_url(GOOD_PNG)


def png_header_only(width: int, height: int) -> bytes:
    """Return a PNG declaring ``width`` x ``height`` whose data contains only a few rows of pixels.

    Opening it succeeds and decoding it fails, so a 413 proves the pixel limit is checked
    on the header, before decoding.
    """
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


@dataclass
class Case:
    name: str
    path: str
    body: Any
    status: int
    error: str
    method: str = "POST"


def region(**fields: Any) -> dict[str, Any]:
    return {"image_url": GOOD_IMAGE_URL, "object": "button", **fields}


def nested(depth: int) -> bytes:
    return b'{"a":' + b"[" * depth + b"]" * depth + b"}"


# A 29-byte PNG whose IHDR chunk declares 100 bytes: Pillow raises OSError when opening it.
PNG_WRONG_HEADER_LENGTH = "iVBORw0KGgoAAABkSUhEUgAAAAAAAAAAAAAAAAA="
LONG_INTEGER = b"1" * 5000


CASES = [
    Case("invalid JSON", "/v1/point", b"{not json", 400, "not valid JSON"),
    Case("empty body", "/v1/point", b"", 400, "body is empty"),
    Case("body not UTF-8", "/v1/point", b"\xff\xfe{}", 400, "not valid JSON"),
    Case("JSON array", "/v1/point", [1, 2], 400, "must be a JSON object, not an array"),
    Case("missing image_url", "/v1/point", {"object": "button"}, 400, "missing field 'image_url'"),
    Case("missing object", "/v1/detect", {"image_url": GOOD_IMAGE_URL}, 400, "missing field 'object'"),
    Case("object is a number", "/v1/point", region(object=7), 400, "invalid field 'object': expected a string, got the number 7"),
    Case("object is empty", "/v1/point", region(object="  "), 400, "invalid field 'object': the string is empty"),
    Case("image_url is a list", "/v1/point", region(image_url=["a"]), 400, "invalid field 'image_url': expected a string, got an array"),
    Case("invalid base64", "/v1/point", region(image_url="!!!!not-base64"), 400, "not valid base64"),
    Case("base64 of text", "/v1/point", region(image_url=bare_base64(b"hello, not an image")), 400, "not a PNG or JPEG image"),
    Case("empty data URL", "/v1/point", region(image_url="data:image/png;base64,"), 400, "the image is empty"),
    Case("truncated PNG", "/v1/point", region(image_url=bare_base64(GOOD_PNG[: len(GOOD_PNG) // 2])), 400, "cannot be decoded"),
    Case("GIF image", "/v1/point", region(image_url=bare_base64(encode(ui_image(), "GIF"))), 400, "not a PNG or JPEG image"),
    Case("SVG media type", "/v1/point", region(image_url="data:image/svg+xml;base64,PHN2Zz4="), 400, "unsupported media type"),
    Case("data URL not base64", "/v1/point", region(image_url="data:image/png,rawbytes"), 400, "not base64-encoded"),
    Case("http URL", "/v1/point", region(image_url="https://example.com/a.png"), 400, "http and https URLs are not fetched"),
    Case("too many pixels", "/v1/point", region(image_url=bare_base64(encode(Image.new("RGB", (1200, 900))))), 413, "1200x900 = 1080000 pixels, above the limit of 1000000"),
    Case("pixel bomb header", "/v1/point", region(image_url=bare_base64(png_header_only(30000, 30000))), 413, "too many pixels"),
    Case("huge header, no pixels", "/v1/point", region(image_url=bare_base64(png_header_only(5000, 5000))), 413, "5000x5000 = 25000000 pixels"),
    Case("body too large", "/v1/point", region(padding="x" * MAX_BODY_BYTES), 413, f"above the limit of {MAX_BODY_BYTES} bytes"),
    Case("caption length invalid", "/v1/caption", {"image_url": GOOD_IMAGE_URL, "length": "huge"}, 400, "invalid field 'length'"),
    Case("stream is a string", "/v1/caption", {"image_url": GOOD_IMAGE_URL, "stream": "yes"}, 400, "invalid field 'stream': expected true or false, got a string"),
    Case("settings is a list", "/v1/point", region(settings=[1]), 400, "invalid field 'settings': expected an object"),
    Case("max_objects negative", "/v1/detect", region(settings={"max_objects": -1}), 400, "invalid field 'settings.max_objects': -1 is outside"),
    Case("max_objects fractional", "/v1/detect", region(settings={"max_objects": 1.5}), 400, "settings.max_objects': expected an integer"),
    Case("temperature is text", "/v1/query", {"question": "q", "settings": {"temperature": "hot"}}, 400, "settings.temperature': expected a number, got a string"),
    Case("temperature NaN", "/v1/query", b'{"question": "q", "settings": {"temperature": NaN}}', 400, "settings.temperature': nan is outside"),
    Case("reasoning is a number", "/v1/query", {"question": "q", "reasoning": 1}, 400, "invalid field 'reasoning'"),
    Case("missing question", "/v1/query", {"image_url": GOOD_IMAGE_URL}, 400, "missing field 'question'"),
    Case("question too long", "/v1/query", {"question": "q" * 5000}, 400, "'question': 5000 characters, above the limit of 4096"),
    Case("PNG header length wrong", "/v1/point", region(image_url=PNG_WRONG_HEADER_LENGTH), 400, "the image header cannot be read"),
    Case("JSON nested 1000 deep", "/v1/point", nested(1000), 400, "nest too deeply"),
    Case("JSON nested 100000 deep", "/v1/point", nested(100_000), 400, "nest too deeply"),
    Case("setting of 5000 digits", "/v1/query", b'{"question": "q", "settings": {"max_tokens": ' + LONG_INTEGER + b"}}", 400, "settings.max_tokens': expected an integer, got an integer of 5000 digits"),
    Case("object of 5000 digits", "/v1/point", b'{"image_url": "a", "object": ' + LONG_INTEGER + b"}", 400, "invalid field 'object': expected a string, got an integer of 5000 digits"),
    Case("max_objects 10**400", "/v1/detect", region(settings={"max_objects": 10**400}), 400, "settings.max_objects': 1000000000000000000000000000000000000000... (401 characters) is outside 1 to 1000"),
    Case("max_tokens 1e400", "/v1/query", b'{"question": "q", "settings": {"max_tokens": 1e400}}', 400, "settings.max_tokens': expected an integer, got the number inf"),
    Case("temperature 10**400", "/v1/query", {"question": "q", "settings": {"temperature": 10**400}}, 400, "settings.temperature': 1000000000000000000000000000000000000000... (401 characters) is outside"),
    Case("object lone surrogate", "/v1/point", region(object="\ud800"), 400, "invalid field 'object': the string contains a lone UTF-16 surrogate"),
    Case("question lone surrogate", "/v1/query", {"question": "\udfff abc"}, 400, "invalid field 'question': the string contains a lone UTF-16 surrogate"),
    Case("GET on point", "/v1/point", None, 405, "method not allowed", method="GET"),
    Case("unknown route", "/v1/segment", region(), 404, "not found"),
]


@pytest.fixture(scope="module")
def server(tiny_model, tiny_model_dir, serve_app_module):
    settings = ServerSettings(
        model_dir=tiny_model_dir, max_body_bytes=MAX_BODY_BYTES, max_image_pixels=MAX_IMAGE_PIXELS
    )
    return serve_app_module(create_app(settings, tiny_model))


def send(base_url: str, case: Case) -> httpx.Response:
    content = case.body if isinstance(case.body, bytes) or case.body is None else json.dumps(case.body).encode()
    headers = {"Content-Type": "application/json"}
    return httpx.request(case.method, base_url + case.path, content=content, headers=headers, timeout=30)


def test_case_table_is_large_enough():
    assert len(CASES) >= 20


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_request_rejected(server, case):
    response = send(server.base_url, case)

    assert response.status_code == case.status, response.text
    body = response.json()
    assert case.error in body["error"]
    assert response.headers["X-Request-Id"]


def test_bad_requests_logged_as_client_errors(server, caplog):
    with caplog.at_level(logging.INFO, logger="moondream_iac.server"):
        statuses = [send(server.base_url, case).status_code for case in CASES]

    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors == []
    assert max(statuses) < 500
    logged = [json.loads(record.getMessage()) for record in caplog.records if record.name == "moondream_iac.server.requests"]
    assert sorted(line["status"] for line in logged) == sorted(statuses)
    assert not any("model" in line.get("error", "") for line in logged)


def test_server_serves_after_bad_requests(server, tiny_model):
    for case in CASES:
        send(server.base_url, case)

    response = httpx.post(server.base_url + "/v1/point", json=region(), timeout=30)

    assert response.status_code == 200
    image = Image.open(BytesIO(GOOD_PNG)).convert("RGB")
    assert response.json()["points"] == tiny_model.point(image, "button")["points"]


@pytest.mark.parametrize("path", ["/v1/point", "/point", "/v1//point", "//point", "/v1/point/", "/point/", "/v1//point/"])
def test_path_forms_reach_point(server, path):
    response = httpx.post(server.base_url + path, json=region(), timeout=30)

    assert response.status_code == 200, response.text
    assert len(response.json()["points"]) == 1


def test_unknown_fields_ignored(server):
    body = region(variant="moondream-2", model="moondream-2", spatial_refs=[[0.1, 0.2]], extra={"a": 1})

    response = httpx.post(server.base_url + "/v1/point", json=body, timeout=30)

    assert response.status_code == 200, response.text
    assert response.json()["request_id"] == response.headers["X-Request-Id"]


@pytest.mark.parametrize("form", ["line breaks", "URL-safe letters", "no padding"])
def test_lenient_base64_forms_accepted(server, form):
    encoded = bare_base64(GOOD_PNG)
    if form == "line breaks":
        encoded = "\n".join(encoded[index:index + 76] for index in range(0, len(encoded), 76))
    elif form == "URL-safe letters":
        encoded = encoded.replace("+", "-").replace("/", "_")
    else:
        encoded = encoded.rstrip("=")

    response = httpx.post(server.base_url + "/v1/point", json=region(image_url=encoded), timeout=30)

    assert response.status_code == 200, response.text


def test_chunked_body_over_limit_rejected(server):
    def chunks():
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b"x" * 65536

    headers = {"Content-Type": "application/json"}
    response = httpx.post(server.base_url + "/v1/point", content=chunks(), headers=headers, timeout=30)

    assert response.status_code == 413
    assert f"above the limit of {MAX_BODY_BYTES} bytes" in response.json()["error"]

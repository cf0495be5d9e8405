"""Limits on costly inputs: JPEG scan bombs, slow image decodes and slowly sent bodies."""

from __future__ import annotations

import json
import logging
import socket
import struct
import time
from io import BytesIO

import httpx
import pytest
from PIL import Image

from moondream_iac.server import images
from moondream_iac.server.app import create_app
from moondream_iac.server.settings import ServerSettings
from tests.server_cases import bare_base64, encode, ui_image

pytestmark = pytest.mark.usefixtures("hub_libraries_imported")

# A 2000x2000 progressive JPEG with its smallest scan repeated 10000 times: about 160 KB,
# and about 2.5 s of CPU to decode (measured with Pillow 13.0 and libjpeg-turbo 3.2 on a
# 2-core x86 machine).
BOMB_SIDE = 2000
BOMB_SCANS = 10_000


def jpeg_scan_bomb(side: int, repeats: int) -> bytes:
    """Return a progressive JPEG whose smallest AC scan is repeated ``repeats`` times before EOI."""
    data = encode(Image.new("L", (side, side), 0), "JPEG", progressive=True, quality=90)
    ac_scans = []
    position = 2
    while data[position + 1] != 0xD9:
        marker = data[position + 1]
        end = position + 2 + struct.unpack(">H", data[position + 2:position + 4])[0]
        if marker == 0xDA:
            component_count = data[position + 4]
            spectral_start = data[position + 5 + 2 * component_count]
            end = entropy_data_end(data, end)
            if spectral_start > 0:
                ac_scans.append((end - position, position, end))
        position = end

    _, start, end = min(ac_scans)
    return data[:end] + data[start:end] * repeats + data[end:]


def entropy_data_end(data: bytes, position: int) -> int:
    """Return the offset of the marker that ends the entropy-coded data starting at ``position``."""
    while not (data[position] == 0xFF and data[position + 1] != 0 and not 0xD0 <= data[position + 1] <= 0xD7):
        position += 1
    return position


@pytest.fixture(scope="module")
def scan_bomb() -> bytes:
    return jpeg_scan_bomb(BOMB_SIDE, BOMB_SCANS)


def post_image(base_url: str, image: bytes, timeout: float = 30) -> httpx.Response:
    body = {"image_url": bare_base64(image), "object": "button"}
    return httpx.post(base_url + "/v1/point", json=body, timeout=timeout)


def test_scan_bomb_has_the_scans(scan_bomb):
    scans = images.count_jpeg_scans(scan_bomb, stop_after=10**6)

    assert scans > BOMB_SCANS
    assert len(scan_bomb) < 400_000


def test_scan_bomb_rejected_before_decoding(tiny_model, tiny_model_dir, serve_app, scan_bomb):
    server = serve_app(create_app(ServerSettings(model_dir=tiny_model_dir), tiny_model))

    started = time.perf_counter()
    response = post_image(server.base_url, scan_bomb)
    elapsed = time.perf_counter() - started

    assert response.status_code == 400, response.text
    assert "more than 64 scans (SOS markers)" in response.json()["error"]
    assert elapsed < 1.0


@pytest.mark.parametrize("options", [{"progressive": True}, {"progressive": True, "quality": 30}, {}])
def test_ordinary_jpeg_accepted(tiny_model, tiny_model_dir, serve_app, options):
    server = serve_app(create_app(ServerSettings(model_dir=tiny_model_dir), tiny_model))
    image = ui_image(seed=5)
    exif = b"Exif\x00\x00" + b"\xff\xda" * 200
    data = encode(image, "JPEG", exif=exif, **options)

    response = post_image(server.base_url, data)

    assert response.status_code == 200, response.text
    assert images.count_jpeg_scans(data, stop_after=1000) <= 10
    decoded = Image.open(BytesIO(data)).convert("RGB")
    assert response.json()["points"] == tiny_model.point(decoded, "button")["points"]


def test_image_decode_bounded_by_deadline(tiny_model, tiny_model_dir, serve_app, scan_bomb, monkeypatch):
    # With the scan limit lifted, the bomb stands for any image that decodes slowly.
    monkeypatch.setattr(images, "MAX_JPEG_SCANS", 10**6)
    settings = ServerSettings(model_dir=tiny_model_dir, request_timeout_s=0.5)
    server = serve_app(create_app(settings, tiny_model))

    started = time.perf_counter()
    response = post_image(server.base_url, scan_bomb)
    elapsed = time.perf_counter() - started

    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "5"
    assert "timed out while decoding the image" in response.json()["error"]
    assert elapsed < 1.5
    assert serves_again(server.base_url, within_s=10.0)


def serves_again(base_url: str, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if post_image(base_url, encode(ui_image(seed=6))).status_code == 200:
            return True
        time.sleep(0.2)
    return False


def slow_sender(port: int, declared_length: int = 1000) -> socket.socket:
    """Open a connection that sends the headers and the first bytes of a JSON body."""
    connection = socket.create_connection(("127.0.0.1", port))
    connection.sendall(
        b"POST /v1/point HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n{\"image_url\": \"" % declared_length
    )
    return connection


def read_response(connection: socket.socket, within_s: float, trickle_every_s: float = 0.2) -> bytes:
    """Send one more body byte every ``trickle_every_s`` and return what the server sends back."""
    deadline = time.monotonic() + within_s
    received = b""
    connection.settimeout(trickle_every_s)
    while time.monotonic() < deadline:
        try:
            connection.sendall(b"A")
        except OSError:
            pass
        try:
            chunk = connection.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            break
        received += chunk
        if b"\r\n\r\n" in received and received.rstrip().endswith(b"}"):
            break
    return received


def test_closed_body_logged_as_client_error(tiny_model, tiny_model_dir, serve_app, caplog):
    server = serve_app(create_app(ServerSettings(model_dir=tiny_model_dir), tiny_model))

    with caplog.at_level(logging.INFO, logger="moondream_iac.server"):
        slow_sender(server.port).close()
        deadline = time.monotonic() + 5
        while not request_lines(caplog) and time.monotonic() < deadline:
            time.sleep(0.05)

    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR] == []
    assert request_lines(caplog)[0]["status"] == 400
    assert "closed the connection" in request_lines(caplog)[0]["error"]


def request_lines(caplog) -> list[dict]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "moondream_iac.server.requests"]


def test_slow_body_answers_408(tiny_model, tiny_model_dir, serve_app):
    settings = ServerSettings(model_dir=tiny_model_dir, body_timeout_s=1.0)
    server = serve_app(create_app(settings, tiny_model))
    connection = slow_sender(server.port)

    started = time.monotonic()
    try:
        response = read_response(connection, within_s=4.0)
    finally:
        connection.close()
    elapsed = time.monotonic() - started

    assert response.startswith(b"HTTP/1.1 408 "), response[:200]
    assert b"application/json" in response
    assert b"the request body did not arrive within 1.0 s" in response
    assert elapsed < 2.5


def test_slow_bodies_hold_no_queue_place(tiny_model, tiny_model_dir, serve_app):
    settings = ServerSettings(model_dir=tiny_model_dir, queue_size=1, body_timeout_s=5.0)
    server = serve_app(create_app(settings, tiny_model))
    senders = [slow_sender(server.port) for _ in range(3)]

    try:
        time.sleep(0.3)
        health = httpx.get(server.base_url + "/v1/health").json()
        response = post_image(server.base_url, encode(ui_image(seed=7)))
    finally:
        for connection in senders:
            connection.close()

    assert response.status_code == 200, response.text
    assert health["queue"]["reading"] == 3
    assert health["queue"]["in_flight"] == 0


def test_body_reads_bounded(tiny_model, tiny_model_dir, serve_app):
    settings = ServerSettings(model_dir=tiny_model_dir, queue_size=1, body_timeout_s=5.0)
    server = serve_app(create_app(settings, tiny_model))
    senders = [slow_sender(server.port) for _ in range(8)]

    try:
        time.sleep(0.3)
        response = post_image(server.base_url, encode(ui_image(seed=8)))
    finally:
        for connection in senders:
            connection.close()

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert "8 request bodies are being received" in response.json()["error"]

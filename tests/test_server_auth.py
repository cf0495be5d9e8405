"""API key checks, the health route, and keeping the key out of responses and logs."""

from __future__ import annotations

import logging

import httpx
import pytest

from moondream_iac.server.app import create_app
from moondream_iac.server.settings import ServerSettings
from tests.server_cases import TEST_API_KEY, data_url, encode, ui_image

pytestmark = pytest.mark.usefixtures("hub_libraries_imported")

IMAGE_URL = data_url(encode(ui_image(seed=31)))
BODIES = {
    "point": {"image_url": IMAGE_URL, "object": "button"},
    "detect": {"image_url": IMAGE_URL, "object": "button"},
    "query": {"image_url": IMAGE_URL, "question": "What?"},
    "caption": {"image_url": IMAGE_URL, "length": "short"},
}
BAD_HEADERS = {
    "no header": {},
    "empty X-Moondream-Auth": {"X-Moondream-Auth": ""},
    "wrong X-Moondream-Auth": {"X-Moondream-Auth": "md-wrong"},
    "key with a suffix": {"X-Moondream-Auth": TEST_API_KEY + "x"},
    "wrong bearer": {"Authorization": "Bearer md-wrong"},
    "key under another scheme": {"Authorization": f"Basic {TEST_API_KEY}"},
}


@pytest.fixture(scope="module")
def keyed_server(tiny_model, tiny_model_dir, serve_app_module):
    settings = ServerSettings(model_dir=tiny_model_dir, auth_mode="api_key", api_key=TEST_API_KEY)
    return serve_app_module(create_app(settings, tiny_model))


@pytest.mark.parametrize("route", sorted(BODIES))
@pytest.mark.parametrize("header_case", sorted(BAD_HEADERS))
def test_missing_or_wrong_key_401(keyed_server, route, header_case):
    response = httpx.post(
        f"{keyed_server.base_url}/v1/{route}", json=BODIES[route], headers=BAD_HEADERS[header_case]
    )

    assert response.status_code == 401
    assert "missing or invalid API key" in response.json()["error"]
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert TEST_API_KEY not in response.text


@pytest.mark.parametrize("route", sorted(BODIES))
def test_right_key_accepted(keyed_server, route):
    by_header = httpx.post(
        f"{keyed_server.base_url}/v1/{route}", json=BODIES[route], headers={"X-Moondream-Auth": TEST_API_KEY}
    )
    by_bearer = httpx.post(
        f"{keyed_server.base_url}/{route}", json=BODIES[route], headers={"Authorization": f"Bearer {TEST_API_KEY}"}
    )
    assert by_header.status_code == 200
    assert by_bearer.status_code == 200
    assert by_header.json()["request_id"] == by_header.headers["X-Request-Id"]


@pytest.mark.parametrize("mode", ["none", "proxy"])
def test_open_modes_ignore_auth_headers(tiny_model, tiny_model_dir, serve_app, mode):
    settings = ServerSettings(model_dir=tiny_model_dir, auth_mode=mode)
    server = serve_app(create_app(settings, tiny_model))
    for headers in ({}, {"X-Moondream-Auth": ""}, {"X-Moondream-Auth": "md-cloud-key"}):
        response = httpx.post(f"{server.base_url}/v1/point", json=BODIES["point"], headers=headers)
        assert response.status_code == 200, headers


@pytest.mark.parametrize("path", ["/v1/health", "/health", "/v1/health/", "//health"])
def test_health_open_and_without_secret(keyed_server, path):
    response = httpx.get(keyed_server.base_url + path)

    assert response.status_code == 200
    body = response.json()
    assert body["ready"] is True
    assert body["live"] is True
    assert body["auth_mode"] == "api_key"
    assert body["dtype"] == "float32"
    assert body["device"] == "cpu"
    assert TEST_API_KEY not in response.text


def test_key_not_in_logs(keyed_server, caplog):
    with caplog.at_level(logging.DEBUG):
        httpx.post(f"{keyed_server.base_url}/v1/point", json=BODIES["point"], headers={"X-Moondream-Auth": TEST_API_KEY})
        httpx.post(f"{keyed_server.base_url}/v1/point", json=BODIES["point"], headers={"Authorization": f"Bearer {TEST_API_KEY}"})
        httpx.post(f"{keyed_server.base_url}/v1/caption", json={"image_url": 5}, headers={"X-Moondream-Auth": TEST_API_KEY})
        httpx.post(f"{keyed_server.base_url}/v1/point", json=BODIES["point"], headers={"X-Moondream-Auth": "md-wrong"})

    request_lines = [record for record in caplog.records if record.name == "moondream_iac.server.requests"]
    assert len(request_lines) == 4
    for record in caplog.records:
        assert TEST_API_KEY not in record.getMessage()
        assert IMAGE_URL[-40:] not in record.getMessage()


def test_settings_repr_hides_key(tiny_model_dir):
    settings = ServerSettings(model_dir=tiny_model_dir, auth_mode="api_key", api_key=TEST_API_KEY)
    assert TEST_API_KEY not in repr(settings)
    assert TEST_API_KEY not in str(settings)

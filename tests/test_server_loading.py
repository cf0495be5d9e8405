"""The background loader: 503 with Retry-After while loading, load failures shown in health."""

from __future__ import annotations

import hashlib
import shutil
import threading
import time

import httpx
import pytest

from moondream_iac.errors import WeightsError
from moondream_iac.server.app import create_app
from moondream_iac.server.model import load_model
from moondream_iac.server.settings import ServerSettings
from moondream_iac.weights.lock import LockedFile, WeightsLock, write_lock
from tests.server_cases import TEST_API_KEY, data_url, encode, ui_image

pytestmark = pytest.mark.usefixtures("hub_libraries_imported")

POINT_BODY = {"image_url": data_url(encode(ui_image(seed=41))), "object": "button"}


def wait_for_health(base_url: str, status: str, timeout_s: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        body = httpx.get(base_url + "/v1/health").json()
        if body["status"] == status or time.monotonic() > deadline:
            return body
        time.sleep(0.02)


def test_loading_answers_503_until_ready(tiny_model_dir, serve_app):
    release = threading.Event()

    def loader():
        release.wait(timeout=30)
        return load_model(tiny_model_dir, dtype="float32", device="cpu")

    server = serve_app(create_app(ServerSettings(model_dir=tiny_model_dir), loader=loader))

    health = httpx.get(server.base_url + "/v1/health")
    assert health.status_code == 503
    assert health.json()["status"] == "loading"
    assert health.json()["ready"] is False
    assert health.json()["live"] is True
    for route in ("point", "detect", "query", "caption"):
        response = httpx.post(f"{server.base_url}/v1/{route}", json=POINT_BODY)
        assert response.status_code == 503
        assert int(response.headers["Retry-After"]) > 0
        assert "still loading" in response.json()["error"]

    large = httpx.post(f"{server.base_url}/v1/point", json={**POINT_BODY, "padding": "x" * 8_000_000})
    assert large.status_code == 503

    release.set()
    assert wait_for_health(server.base_url, "ready")["ready"] is True
    assert httpx.post(server.base_url + "/v1/point", json=POINT_BODY).status_code == 200


def test_auth_checked_before_loading_state(tiny_model_dir, serve_app):
    release = threading.Event()
    settings = ServerSettings(model_dir=tiny_model_dir, auth_mode="api_key", api_key=TEST_API_KEY)
    server = serve_app(create_app(settings, loader=lambda: release.wait(timeout=30)))

    response = httpx.post(server.base_url + "/v1/point", json=POINT_BODY)

    assert response.status_code == 401
    release.set()


def test_load_failure_shown_in_health(tmp_path, serve_app):
    empty_dir = tmp_path / "not-a-model"
    empty_dir.mkdir()
    settings = ServerSettings(model_dir=empty_dir)
    server = serve_app(create_app(settings, loader=lambda: load_model(empty_dir, device="cpu")))

    health = wait_for_health(server.base_url, "failed")
    response = httpx.post(server.base_url + "/v1/point", json=POINT_BODY)

    assert health["ready"] is False
    assert "ModelLoadError" in health["error"]
    assert "has no config.json" in health["error"]
    assert response.status_code == 503
    assert "Retry-After" in response.headers
    assert "failed to load" in response.json()["error"]


def test_load_error_text_redacts_key(tiny_model_dir, serve_app):
    def loader():
        raise RuntimeError(f"cannot reach the hub with token {TEST_API_KEY}")

    settings = ServerSettings(model_dir=tiny_model_dir, auth_mode="api_key", api_key=TEST_API_KEY)
    server = serve_app(create_app(settings, loader=loader))

    health = wait_for_health(server.base_url, "failed")

    assert "cannot reach the hub" in health["error"]
    assert TEST_API_KEY not in health["error"]
    assert "[redacted]" in health["error"]


def locked_copy(tiny_model_dir, destination):
    model_dir = shutil.copytree(tiny_model_dir, destination / "model")
    files = {}
    for path in sorted(model_dir.iterdir()):
        data = path.read_bytes()
        files[path.name] = LockedFile(
            size=len(data), sha256=hashlib.sha256(data).hexdigest(), hub_check="lfs-sha256", hub_oid="0" * 64
        )
    lock_path = destination / "weights.lock.json"
    write_lock(WeightsLock(repo="stand-in/moondream", revision="test", sha="a" * 40, files=files), lock_path)
    return model_dir, lock_path


def test_lock_file_checked_before_load(tiny_model_dir, tmp_path, serve_app):
    model_dir, lock_path = locked_copy(tiny_model_dir, tmp_path)
    model = load_model(model_dir, dtype="float32", device="cpu", lock_file=lock_path)
    assert model.point is not None

    weights = model_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(WeightsError, match="model.safetensors"):
        load_model(model_dir, dtype="float32", device="cpu", lock_file=lock_path)

    settings = ServerSettings(model_dir=model_dir, lock_file=lock_path)
    loader = lambda: load_model(model_dir, dtype="float32", device="cpu", lock_file=lock_path)  # noqa: E731
    server = serve_app(create_app(settings, loader=loader))
    health = wait_for_health(server.base_url, "failed")
    assert "WeightsError" in health["error"]
    assert "model.safetensors" in health["error"]

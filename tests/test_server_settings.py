"""ServerSettings from the environment, and the ``python -m moondream_iac.server`` entry point."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from moondream_iac.server.settings import ServerSettings, SettingsError
from tests.server_cases import TEST_API_KEY, data_url, encode, ui_image


def test_from_env_reads_every_variable(tmp_path):
    environ = {
        "MOONDREAM_IAC_MODEL_DIR": str(tmp_path),
        "MOONDREAM_IAC_LOCK_FILE": str(tmp_path / "lock.json"),
        "MOONDREAM_IAC_MODEL_REPO": "vikhyatk/moondream2",
        "MOONDREAM_IAC_REVISION": "2025-06-21",
        "MOONDREAM_IAC_DTYPE": "bfloat16",
        "MOONDREAM_IAC_DEVICE": "cuda:0",
        "MOONDREAM_IAC_TRANSFORMERS_RANGE": ">=4.51,<5",
        "MOONDREAM_IAC_AUTH_MODE": "api_key",
        "MOONDREAM_IAC_API_KEY_ENV": "MY_KEY",
        "MY_KEY": TEST_API_KEY,
        "MOONDREAM_IAC_MAX_BODY_BYTES": "1000",
        "MOONDREAM_IAC_MAX_IMAGE_PIXELS": "2000",
        "MOONDREAM_IAC_QUEUE_SIZE": "3",
        "MOONDREAM_IAC_REQUEST_TIMEOUT_S": "9.5",
        "MOONDREAM_IAC_BODY_TIMEOUT_S": "7.5",
        "MOONDREAM_IAC_IMAGE_CACHE_SIZE": "4",
        "MOONDREAM_IAC_SPEC_HASH": "abc123",
        "MOONDREAM_IAC_TOOL_VERSION": "9.9.9",
        "MOONDREAM_IAC_HOST": "0.0.0.0",
        "MOONDREAM_IAC_PORT": "8000",
    }

    settings = ServerSettings.from_env(environ)

    assert settings == ServerSettings(
        model_dir=tmp_path,
        lock_file=tmp_path / "lock.json",
        model_repo="vikhyatk/moondream2",
        revision="2025-06-21",
        dtype="bfloat16",
        device="cuda:0",
        transformers_range=">=4.51,<5",
        auth_mode="api_key",
        api_key=TEST_API_KEY,
        api_key_env="MY_KEY",
        max_body_bytes=1000,
        max_image_pixels=2000,
        queue_size=3,
        request_timeout_s=9.5,
        body_timeout_s=7.5,
        image_cache_size=4,
        spec_hash="abc123",
        tool_version="9.9.9",
        host="0.0.0.0",
        port=8000,
    )


def test_from_env_defaults(tmp_path):
    settings = ServerSettings.from_env({"MOONDREAM_IAC_MODEL_DIR": str(tmp_path)})
    assert settings.auth_mode == "none"
    assert settings.api_key is None
    assert settings.max_body_bytes == 20 * 1024 * 1024
    assert settings.max_image_pixels == 16_000_000
    assert settings.queue_size == 32
    assert settings.request_timeout_s == 120
    assert settings.body_timeout_s == 30
    assert settings.image_cache_size == 8
    assert settings.port == 2020


def test_from_env_key_turns_auth_on(tmp_path):
    settings = ServerSettings.from_env({"MOONDREAM_IAC_MODEL_DIR": str(tmp_path), "MOONDREAM_API_KEY": TEST_API_KEY})
    assert settings.auth_mode == "api_key"
    assert settings.api_key == TEST_API_KEY


def test_overrides_win_and_none_ignored(tmp_path):
    environ = {"MOONDREAM_IAC_MODEL_DIR": "/elsewhere", "MOONDREAM_IAC_PORT": "9000"}
    settings = ServerSettings.from_env(environ, model_dir=str(tmp_path), port=None)
    assert settings.model_dir == tmp_path
    assert settings.port == 9000


def test_image_cache_zero_allowed(tmp_path):
    environ = {"MOONDREAM_IAC_MODEL_DIR": str(tmp_path), "MOONDREAM_IAC_AUTH_MODE": "none",
               "MOONDREAM_IAC_IMAGE_CACHE_SIZE": "0"}

    settings = ServerSettings.from_env(environ)

    assert settings.image_cache_size == 0


@pytest.mark.parametrize(
    "environ, message",
    [
        ({}, "the model directory is not set"),
        ({"MOONDREAM_IAC_MODEL_DIR": "m", "MOONDREAM_IAC_AUTH_MODE": "api_key"}, "no API key is set: put the key in the MOONDREAM_API_KEY"),
        ({"MOONDREAM_IAC_MODEL_DIR": "m", "MOONDREAM_IAC_AUTH_MODE": "basic"}, "invalid auth_mode 'basic'"),
        ({"MOONDREAM_IAC_MODEL_DIR": "m", "MOONDREAM_IAC_DTYPE": "int4"}, "invalid dtype 'int4'"),
        ({"MOONDREAM_IAC_MODEL_DIR": "m", "MOONDREAM_IAC_QUEUE_SIZE": "many"}, "invalid MOONDREAM_IAC_QUEUE_SIZE 'many': expected int"),
        ({"MOONDREAM_IAC_MODEL_DIR": "m", "MOONDREAM_IAC_QUEUE_SIZE": "0"}, "invalid queue_size 0"),
        ({"MOONDREAM_IAC_MODEL_DIR": "m", "MOONDREAM_IAC_PORT": "70000"}, "invalid port 70000"),
        ({"MOONDREAM_IAC_MODEL_DIR": "m", "MOONDREAM_IAC_IMAGE_CACHE_SIZE": "-1"}, "invalid image_cache_size -1"),
        ({"MOONDREAM_IAC_MODEL_DIR": "m", "MOONDREAM_IAC_BODY_TIMEOUT_S": "0"}, "invalid body_timeout_s 0.0"),
        ({"MOONDREAM_IAC_MODEL_DIR": "m", "MOONDREAM_API_KEY": "clé-secrète-123"}, "invalid API key in MOONDREAM_API_KEY: it contains non-ASCII"),
        ({"MOONDREAM_IAC_MODEL_DIR": "m", "MOONDREAM_API_KEY": TEST_API_KEY + "\n"}, "invalid API key in MOONDREAM_API_KEY"),
        ({"MOONDREAM_IAC_MODEL_DIR": "m", "MOONDREAM_API_KEY": "key\twith-tab"}, "invalid API key in MOONDREAM_API_KEY"),
    ],
)
def test_from_env_errors(environ, message):
    with pytest.raises(SettingsError, match=message):
        ServerSettings.from_env(environ)


def test_api_key_not_in_settings_error():
    with pytest.raises(SettingsError) as raised:
        ServerSettings(model_dir="m", auth_mode="api_key", api_key="sécret-key-42")

    assert "sécret" not in str(raised.value)
    assert "printable ASCII" in str(raised.value)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_module_entry_point_serves(tiny_model_dir: Path):
    port = free_port()
    env = {
        **os.environ,
        "MOONDREAM_IAC_MODEL_DIR": str(tiny_model_dir),
        "MOONDREAM_IAC_SPEC_HASH": "spec-1",
        "MOONDREAM_API_KEY": TEST_API_KEY,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "moondream_iac.server", "--port", str(port), "--device", "cpu", "--revision", "r1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        base_url = f"http://127.0.0.1:{port}"
        health = wait_until_ready(base_url, process)
        response = httpx.post(
            base_url + "/v1/point",
            json={"image_url": data_url(encode(ui_image())), "object": "a"},
            headers={"X-Moondream-Auth": TEST_API_KEY},
        )
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=20)

    assert health["spec_hash"] == "spec-1"
    assert health["revision"] == "r1"
    assert health["auth_mode"] == "api_key"
    assert response.status_code == 200
    assert '"route": "/v1/point"' in output
    assert TEST_API_KEY not in output


def wait_until_ready(base_url: str, process: subprocess.Popen, timeout_s: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read()
        try:
            body = httpx.get(base_url + "/v1/health").json()
        except httpx.TransportError:
            body = {}
        if body.get("ready"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"the server at {base_url} was not ready within {timeout_s} s")


def test_module_entry_point_rejects_bad_settings():
    env = {key: value for key, value in os.environ.items() if not key.startswith("MOONDREAM")}
    completed = subprocess.run(
        [sys.executable, "-m", "moondream_iac.server"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 2
    assert "the model directory is not set: pass --model-dir" in completed.stderr

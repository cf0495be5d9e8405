"""The npm ``moondream`` 0.1.1 client (the version Magnitude resolves) against the server.

The client lives in tests/node; install it with ``npm ci --prefix tests/node``. When it is
not installed yet, the first test here runs that command.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from moondream_iac.server.app import create_app
from moondream_iac.server.settings import ServerSettings
from tests.server_cases import TEST_API_KEY, bare_base64, data_url, encode, ui_image

NODE_DIR = Path(__file__).parent / "node"

pytestmark = [
    pytest.mark.usefixtures("hub_libraries_imported"),
    pytest.mark.node,
    pytest.mark.skipif(
        shutil.which("node") is None or shutil.which("npm") is None,
        reason="node and npm are not installed; the npm moondream client tests need both",
    ),
]


@pytest.fixture(scope="module")
def node_client() -> Path:
    """The installed npm client, installed from package-lock.json when missing."""
    if not (NODE_DIR / "node_modules" / "moondream" / "package.json").is_file():
        completed = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR, capture_output=True, text=True, timeout=600, check=False,
        )
        assert completed.returncode == 0, f"npm ci failed in {NODE_DIR}:\n{completed.stderr}"
    installed = json.loads((NODE_DIR / "node_modules" / "moondream" / "package.json").read_text())
    assert installed["version"] == "0.1.1"
    return NODE_DIR / "run_client.js"


@pytest.fixture(scope="module")
def open_server(tiny_model, tiny_model_dir, serve_app_module):
    settings = ServerSettings(model_dir=tiny_model_dir, auth_mode="none")
    return serve_app_module(create_app(settings, tiny_model))


@pytest.fixture(scope="module")
def keyed_server(tiny_model, tiny_model_dir, serve_app_module):
    settings = ServerSettings(model_dir=tiny_model_dir, auth_mode="api_key", api_key=TEST_API_KEY)
    return serve_app_module(create_app(settings, tiny_model))


def run_node(script: Path, endpoint: str, api_key: str, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    spec = json.dumps({"endpoint": endpoint, "apiKey": api_key, "calls": calls})
    completed = subprocess.run(
        ["node", str(script)], input=spec, capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def point_call(image_url: str, target: str) -> dict[str, Any]:
    return {"method": "point", "request": {"image": {"imageUrl": image_url}, "object": target}}


PNG = encode(ui_image(1280, 720, seed=11))


def expected_point(model: Any, target: str) -> dict[str, Any]:
    return {"points": model.point(Image.open(BytesIO(PNG)).convert("RGB"), target)["points"]}


@pytest.mark.parametrize("suffix", ["/v1", "/v1/", ""])
@pytest.mark.parametrize("image_form", ["bare base64", "data URL"])
def test_node_point_without_key(node_client, open_server, tiny_model, suffix, image_form):
    image_url = bare_base64(PNG) if image_form == "bare base64" else data_url(PNG)
    outputs = run_node(node_client, open_server.base_url + suffix, "", [point_call(image_url, "login button")])
    assert outputs == [{"result": expected_point(tiny_model, "login button")}]


@pytest.mark.parametrize("suffix", ["/v1", "/v1/", ""])
@pytest.mark.parametrize("image_form", ["bare base64", "data URL"])
def test_node_point_with_key(node_client, keyed_server, tiny_model, suffix, image_form):
    image_url = bare_base64(PNG) if image_form == "bare base64" else data_url(PNG)
    outputs = run_node(node_client, keyed_server.base_url + suffix, TEST_API_KEY, [point_call(image_url, "search box")])
    assert outputs == [{"result": expected_point(tiny_model, "search box")}]


def test_node_point_wrong_or_empty_key(node_client, keyed_server):
    endpoint = keyed_server.base_url + "/v1"
    wrong = run_node(node_client, endpoint, "md-wrong-key", [point_call(bare_base64(PNG), "x")])
    empty = run_node(node_client, endpoint, "", [point_call(bare_base64(PNG), "x")])
    assert wrong == [{"error": "HTTP error! status: 401"}]
    assert empty == [{"error": "HTTP error! status: 401"}]


def test_node_every_call(node_client, open_server, tiny_model):
    jpeg = encode(ui_image(640, 400, seed=12), "JPEG", quality=90)
    image = {"imageUrl": data_url(jpeg, "image/jpeg")}
    decoded = Image.open(BytesIO(jpeg)).convert("RGB")
    calls = [
        {"method": "caption", "request": {"image": image, "length": "short"}},
        {"method": "caption", "request": {"image": image, "length": "normal", "stream": True}},
        {"method": "query", "request": {"image": image, "question": "What is this?"}},
        {"method": "query", "request": {"image": image, "question": "Where?", "stream": True}},
        {"method": "detect", "request": {"image": image, "object": "panel"}},
    ]

    outputs = run_node(node_client, open_server.base_url + "/v1/", "", calls)

    assert outputs[0] == {"result": {"caption": tiny_model.caption(decoded, length="short")["caption"]}}
    assert outputs[1] == {"result": {"caption": tiny_model.caption(decoded, length="normal")["caption"]}}
    assert outputs[2] == {"result": {"answer": tiny_model.query(decoded, "What is this?")["answer"]}}
    assert outputs[3] == {"result": {"answer": tiny_model.query(decoded, "Where?")["answer"]}}
    assert outputs[4] == {"result": tiny_model.detect(decoded, "panel")}

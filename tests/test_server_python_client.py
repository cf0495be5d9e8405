"""The PyPI ``moondream`` 2.6.1 client against the server over HTTP on 127.0.0.1."""

from __future__ import annotations

import urllib.error

import moondream
import pytest

from moondream_iac.server.app import create_app
from moondream_iac.server.model import load_model
from moondream_iac.server.settings import ServerSettings
from moondream_iac.testing import write_tiny_model
from tests.server_cases import TEST_API_KEY, as_client_sends, ui_image

pytestmark = pytest.mark.usefixtures("hub_libraries_imported")


@pytest.fixture(scope="module")
def open_server(tiny_model, tiny_model_dir, serve_app_module):
    settings = ServerSettings(model_dir=tiny_model_dir, auth_mode="none")
    return serve_app_module(create_app(settings, tiny_model))


@pytest.fixture(scope="module")
def keyed_server(tiny_model, tiny_model_dir, serve_app_module):
    settings = ServerSettings(model_dir=tiny_model_dir, auth_mode="api_key", api_key=TEST_API_KEY)
    return serve_app_module(create_app(settings, tiny_model))


@pytest.mark.parametrize("server_name, api_key", [("open_server", None), ("keyed_server", TEST_API_KEY)])
def test_python_client_every_call(request, tiny_model, server_name, api_key):
    server = request.getfixturevalue(server_name)
    client = moondream.vl(api_key=api_key, endpoint=f"{server.base_url}/v1")
    image = ui_image(seed=1)
    sent = as_client_sends(image)

    caption = client.caption(image, length="short")
    assert caption == {"caption": tiny_model.caption(sent, length="short")["caption"]}

    streamed = "".join(client.caption(image, length="long", stream=True)["caption"])
    assert streamed == tiny_model.caption(sent, length="long")["caption"]

    answer = client.query(image, "What is on the screen?")
    assert answer == {"answer": tiny_model.query(sent, "What is on the screen?")["answer"]}

    streamed_answer = "".join(client.query(image, "Which button?", stream=True)["answer"])
    assert streamed_answer == tiny_model.query(sent, "Which button?")["answer"]

    detected = client.detect(image, "button", settings={"max_objects": 2})
    assert detected == tiny_model.detect(sent, "button", settings={"max_objects": 2})

    pointed = client.point(image, "the submit button")
    assert pointed == tiny_model.point(sent, "the submit button")
    assert len(pointed["points"]) == 1
    assert 0.0 <= pointed["points"][0]["x"] <= 1.0
    assert 0.0 <= pointed["points"][0]["y"] <= 1.0


def test_python_client_query_reasoning_and_text_only(open_server, tiny_model):
    client = moondream.vl(endpoint=f"{open_server.base_url}/v1")
    sent = as_client_sends(ui_image(seed=2))

    with_reasoning = client.query(ui_image(seed=2), "Why?", reasoning=True)
    expected = tiny_model.query(sent, "Why?", reasoning=True)
    assert with_reasoning["answer"] == expected["answer"]
    assert with_reasoning["reasoning"] == expected["reasoning"]

    text_only = client.query(question="Say something")
    assert text_only == {"answer": tiny_model.query(None, "Say something")["answer"]}


@pytest.mark.parametrize("suffix", ["/v1", "/v1/", "", "/"])
def test_python_client_endpoint_forms(open_server, tiny_model, suffix):
    client = moondream.vl(endpoint=open_server.base_url + suffix)
    image = ui_image(seed=3)
    result = client.point(image, "menu")
    assert result == tiny_model.point(as_client_sends(image), "menu")


def test_python_client_without_key_rejected(keyed_server):
    client = moondream.vl(endpoint=f"{keyed_server.base_url}/v1")
    with pytest.raises(urllib.error.HTTPError) as raised:
        client.point(ui_image(), "menu")
    assert raised.value.code == 401


def test_python_client_wrong_key_rejected(keyed_server):
    client = moondream.vl(api_key="md-wrong-key", endpoint=f"{keyed_server.base_url}/v1")
    with pytest.raises(urllib.error.HTTPError) as raised:
        client.caption(ui_image(), stream=False)
    assert raised.value.code == 401


def test_served_weights_decide_answers(tmp_path, tiny_model, serve_app):
    other_dir = write_tiny_model(tmp_path / "variant-1", variant=1)
    other_model = load_model(other_dir, dtype="float32", device="cpu")
    settings = ServerSettings(model_dir=other_dir)
    server = serve_app(create_app(settings, other_model))
    client = moondream.vl(endpoint=f"{server.base_url}/v1")
    image = ui_image(seed=4)
    sent = as_client_sends(image)

    served = client.caption(image, length="long")["caption"]
    assert served == other_model.caption(sent, length="long")["caption"]
    assert served != tiny_model.caption(sent, length="long")["caption"]

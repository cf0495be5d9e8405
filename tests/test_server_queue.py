"""Load handling: the bounded queue, timeouts, stream errors, concurrency and the image cache."""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO

import httpx
import pytest
from PIL import Image

from moondream_iac.server.app import create_app
from moondream_iac.server.model import load_model
from moondream_iac.server.settings import ServerSettings
from moondream_iac.testing import write_tiny_model
from tests.server_cases import bare_base64, encode, ui_image

pytestmark = pytest.mark.usefixtures("hub_libraries_imported")

CALL_SECONDS = 0.6


@pytest.fixture(scope="module")
def slow_model_dir(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("slow-moondream"), call_seconds=CALL_SECONDS)


@pytest.fixture(scope="module")
def slow_model(slow_model_dir):
    return load_model(slow_model_dir, dtype="float32", device="cpu")


def point_body(seed: int = 51) -> dict:
    return {"image_url": bare_base64(encode(ui_image(seed=seed))), "object": "button"}


def wait_until_waiting(base_url: str, count: int, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while httpx.get(base_url + "/v1/health").json()["queue"]["waiting"] < count:
        assert time.monotonic() < deadline, f"{count} requests never queued"
        time.sleep(0.01)


def test_full_queue_answers_503_quickly(slow_model, slow_model_dir, serve_app):
    settings = ServerSettings(model_dir=slow_model_dir, queue_size=2)
    server = serve_app(create_app(settings, slow_model))
    url = server.base_url + "/v1/point"

    with ThreadPoolExecutor(max_workers=3) as pool:
        accepted = [pool.submit(httpx.post, url, json=point_body(), timeout=30) for _ in range(3)]
        wait_until_waiting(server.base_url, 2)

        started = time.perf_counter()
        rejected = httpx.post(url, json=point_body(), timeout=30)
        elapsed = time.perf_counter() - started

        statuses = [future.result().status_code for future in accepted]

    assert rejected.status_code == 503
    assert rejected.headers["Retry-After"] == "1"
    assert "busy" in rejected.json()["error"]
    assert elapsed < 0.3
    assert statuses == [200, 200, 200]


def test_request_timeout_answers_503(slow_model, slow_model_dir, serve_app):
    settings = ServerSettings(model_dir=slow_model_dir, request_timeout_s=0.3)
    server = serve_app(create_app(settings, slow_model))

    with ThreadPoolExecutor(max_workers=2) as pool:
        responses = list(pool.map(lambda _: httpx.post(server.base_url + "/v1/point", json=point_body(), timeout=30), range(2)))

    for response in responses:
        assert response.status_code == 503
        assert "timed out" in response.json()["error"]
        assert "Retry-After" in response.headers


def test_stream_timeout_before_first_chunk(slow_model, slow_model_dir, serve_app):
    settings = ServerSettings(model_dir=slow_model_dir, request_timeout_s=0.3)
    server = serve_app(create_app(settings, slow_model))

    response = httpx.post(server.base_url + "/v1/caption", json={**point_body(), "stream": True}, timeout=30)

    assert response.status_code == 503
    assert "timed out" in response.json()["error"]


class FailingStreamModel:
    """Wraps the stand-in; its caption stream fails after two pieces, like a model error mid-stream."""

    def __init__(self, model):
        self._model = model

    def encode_image(self, image):
        return self._model.encode_image(image)

    def caption(self, image, length="normal", stream=False, settings=None):
        def pieces():
            yield "first"
            yield " second"
            raise RuntimeError("CUDA out of memory")

        return {"caption": pieces()}


def test_stream_error_sent_as_event(tiny_model, tiny_model_dir, serve_app, caplog):
    server = serve_app(create_app(ServerSettings(model_dir=tiny_model_dir), FailingStreamModel(tiny_model)))

    with caplog.at_level(logging.INFO):
        response = httpx.post(server.base_url + "/v1/caption", json={**point_body(), "stream": True}, timeout=30)
        # The server logs a stream after its last byte is sent, so the client may finish first.
        deadline = time.monotonic() + 5
        while not request_log_lines(caplog) and time.monotonic() < deadline:
            time.sleep(0.02)

    events = [json.loads(line[6:]) for line in response.text.split("\n\n") if line.startswith("data: ")]
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert events[:2] == [{"chunk": "first"}, {"chunk": " second"}]
    assert events[2]["error"] == "the model failed while streaming"
    assert "completed" not in events[2]
    assert len(events) == 3
    assert request_log_lines(caplog)[-1]["stream_error"] == "RuntimeError: CUDA out of memory"


def request_log_lines(caplog) -> list[dict]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "moondream_iac.server.requests"]


def test_stream_events_end_with_completed(tiny_model, tiny_model_dir, serve_app):
    server = serve_app(create_app(ServerSettings(model_dir=tiny_model_dir), tiny_model))
    body = {"question": "What is this?", "stream": True, "reasoning": True}

    response = httpx.post(server.base_url + "/v1/query", json=body, timeout=30)

    events = [json.loads(line[6:]) for line in response.text.split("\n\n") if line.startswith("data: ")]
    expected = tiny_model.query(None, "What is this?", reasoning=True)
    assert "".join(event.get("chunk", "") for event in events) == expected["answer"]
    assert events[-1]["completed"] is True
    assert events[-1]["reasoning"] == expected["reasoning"]
    assert events[-1]["request_id"] == response.headers["X-Request-Id"]


def test_concurrent_requests_get_own_answers(tiny_model, tiny_model_dir, serve_app):
    server = serve_app(create_app(ServerSettings(model_dir=tiny_model_dir), tiny_model))
    seeds = list(range(60, 76))

    def point(seed):
        return httpx.post(server.base_url + "/v1/point", json=point_body(seed), timeout=30).json()

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(point, seeds))

    for seed, result in zip(seeds, results):
        image = Image.open(BytesIO(encode(ui_image(seed=seed)))).convert("RGB")
        assert result["points"] == tiny_model.point(image, "button")["points"], seed


def test_repeated_image_hits_cache(tiny_model, tiny_model_dir, serve_app, caplog):
    server = serve_app(create_app(ServerSettings(model_dir=tiny_model_dir, image_cache_size=2), tiny_model))
    bodies = [point_body(81), point_body(81), point_body(82), point_body(83), point_body(81)]

    with caplog.at_level(logging.INFO):
        results = [httpx.post(server.base_url + "/v1/point", json=body, timeout=30).json() for body in bodies]

    lines = [record.getMessage() for record in caplog.records if record.name == "moondream_iac.server.requests"]
    hits = [json.loads(line)["image_cache_hit"] for line in lines]
    assert hits == [False, True, False, False, False]
    assert results[0]["points"] == results[1]["points"] == results[4]["points"]


def test_server_timing_reports_model_time(slow_model, slow_model_dir, serve_app):
    server = serve_app(create_app(ServerSettings(model_dir=slow_model_dir), slow_model))

    response = httpx.post(server.base_url + "/v1/point", json=point_body(), timeout=30)

    timings = dict(part.strip().split(";dur=") for part in response.headers["Server-Timing"].split(","))
    assert float(timings["model"]) >= CALL_SECONDS * 1000
    assert 0 <= float(timings["queue"]) < CALL_SECONDS * 1000


def test_in_flight_count_returns_to_zero(slow_model, slow_model_dir, tiny_model, serve_app):
    server = serve_app(create_app(ServerSettings(model_dir=slow_model_dir), slow_model))
    stream_body = {**point_body(), "stream": True}

    with httpx.stream("POST", server.base_url + "/v1/caption", json=stream_body, timeout=30) as response:
        assert response.status_code == 200
        next(response.iter_bytes())
    with httpx.Client(timeout=0.2) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.post(server.base_url + "/v1/caption", json=stream_body)
    httpx.post(server.base_url + "/v1/point", json={"image_url": "!"}, timeout=30)
    httpx.post(server.base_url + "/v1/point", json=point_body(), timeout=30)

    deadline = time.monotonic() + 10
    while httpx.get(server.base_url + "/v1/health").json()["queue"]["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert httpx.get(server.base_url + "/v1/health").json()["queue"] == {"waiting": 0, "in_flight": 0, "size": 32, "reading": 0}


class QueryWithoutReasoningModel:
    """Wraps the stand-in with a query that has no reasoning parameter, as older model code may."""

    def __init__(self, model):
        self._model = model

    def encode_image(self, image):
        return self._model.encode_image(image)

    def query(self, image=None, question=None, stream=False, settings=None):
        return self._model.query(image, question, stream=stream, settings=settings)


def test_reasoning_on_older_model_code(tiny_model, tiny_model_dir, serve_app):
    server = serve_app(create_app(ServerSettings(model_dir=tiny_model_dir), QueryWithoutReasoningModel(tiny_model)))

    plain = httpx.post(server.base_url + "/v1/query", json={"question": "What?", "reasoning": False}, timeout=30)
    asked = httpx.post(server.base_url + "/v1/query", json={"question": "What?", "reasoning": True}, timeout=30)

    assert plain.status_code == 200
    assert plain.json()["answer"] == tiny_model.query(None, "What?")["answer"]
    assert asked.status_code == 400
    assert "does not support reasoning" in asked.json()["error"]


def test_event_loop_free_during_model_call(slow_model, slow_model_dir, serve_app):
    server = serve_app(create_app(ServerSettings(model_dir=slow_model_dir), slow_model))

    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(httpx.post, server.base_url + "/v1/point", json=point_body(), timeout=30)
        time.sleep(0.1)
        started = time.perf_counter()
        health = httpx.get(server.base_url + "/v1/health")
        elapsed = time.perf_counter() - started
        assert running.result().status_code == 200

    assert health.status_code == 200
    assert health.json()["queue"]["in_flight"] == 1
    assert elapsed < CALL_SECONDS / 3

"""Shared fixtures: the tiny stand-in model and ASGI apps served over real HTTP on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from moondream_iac.testing import write_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in Moondream model directory in Hugging Face format (variant 0)."""
    return write_tiny_model(tmp_path_factory.mktemp("tiny-moondream"), variant=0)


@pytest.fixture(scope="session")
def hub_libraries_imported() -> None:
    """Import huggingface_hub and transformers with the environment as it is.

    ``load_model`` sets ``HF_HUB_OFFLINE=1`` when it is the first to import them, and
    huggingface_hub reads that once, at import. Importing them first keeps the test
    process online for the tests that talk to a hub server on 127.0.0.1.
    """
    import huggingface_hub  # noqa: F401
    import transformers  # noqa: F401


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir: Path, hub_libraries_imported: None) -> Any:
    """The stand-in model loaded through the runtime's ``load_model`` on the CPU."""
    from moondream_iac.server.model import load_model

    return load_model(tiny_model_dir, dtype="float32", device="cpu")


class ServedApp:
    """An ASGI app running under uvicorn on a thread, at ``base_url``."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def start(self, timeout_s: float = 10.0) -> ServedApp:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"uvicorn did not start on {self.base_url} within {timeout_s} s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()


def _serve_apps() -> Iterator[Callable[[Any], ServedApp]]:
    served: list[ServedApp] = []

    def start(app: Any) -> ServedApp:
        server = ServedApp(app).start()
        served.append(server)
        return server

    yield start
    for server in served:
        server.stop()


@pytest.fixture
def serve_app() -> Iterator[Callable[[Any], ServedApp]]:
    """Start ASGI apps on free 127.0.0.1 ports; each is stopped when the test ends."""
    yield from _serve_apps()


@pytest.fixture(scope="module")
def serve_app_module() -> Iterator[Callable[[Any], ServedApp]]:
    """Like ``serve_app``, but the apps run until the test module ends."""
    yield from _serve_apps()

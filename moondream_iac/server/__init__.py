"""The serving runtime: the Moondream HTTP API over a model loaded with transformers.

It takes plain settings and a loaded model (or a loader), so the Modal app, the local
target and the tests serve the same code. Importing this package imports neither
fastapi nor torch; ``create_app`` and ``load_model`` import them when called.
"""

from typing import Any

__all__ = ["ServerSettings", "check_runtime_requirements", "create_app", "load_model"]


def __getattr__(name: str) -> Any:
    if name == "ServerSettings":
        from moondream_iac.server.settings import ServerSettings

        return ServerSettings
    if name == "create_app":
        from moondream_iac.server.app import create_app

        return create_app
    if name in ("load_model", "check_runtime_requirements"):
        from moondream_iac.server import model

        return getattr(model, name)
    raise AttributeError(f"module 'moondream_iac.server' has no attribute {name!r}")

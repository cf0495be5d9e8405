"""The entry point the rendered Modal weights function calls, so the template stays thin.

The rendered function mounts the weights volume, calls ``run_weights_job`` and then
``volume.commit()``. The hub token arrives as the name of an environment variable that a
Modal secret sets; its value is read here and never logged or returned.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from moondream_iac.errors import WeightsError


def run_weights_job(repo: str, revision: str, root: str | Path, token_env: str | None = None) -> dict:
    """Sync ``repo``@``revision`` onto ``root`` and return the weights lock as a JSON-ready dict."""
    from moondream_iac.weights.sync import sync_weights

    _log_to_stderr()
    token = None
    if token_env:
        token = os.environ.get(token_env)
        if not token:
            raise WeightsError(
                f"environment variable {token_env} is empty or not set; attach the Modal secret "
                "that defines it to the weights function"
            )

    lock = sync_weights(repo, revision, Path(root), token=token)
    return lock.to_dict()


def _log_to_stderr() -> None:
    weights_logger = logging.getLogger("moondream_iac.weights")
    if not logging.getLogger().handlers and not weights_logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        weights_logger.addHandler(handler)
        weights_logger.setLevel(logging.INFO)

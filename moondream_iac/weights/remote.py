"""The entry point the rendered Modal weights function calls, so the template stays thin.

The rendered function mounts the weights volume, calls ``run_weights_job`` and then
``volume.commit()``. The hub token arrives as the name of an environment variable that a
Modal secret sets. Its value is read here and is never logged or returned.
"""

from __future__ import annotations

import os
from pathlib import Path

from moondream_iac.errors import WeightsError


def run_weights_job(repo: str, revision: str, root: str | Path, token_env: str | None = None,
                    pinned: dict | None = None) -> dict:
    """Sync ``repo``@``revision`` onto ``root`` and return the weights lock as a JSON-ready dict.

    ``pinned`` is the weights.lock committed beside deploy.yaml, as a dict: when it is for
    the same repo and revision, the hub's commit and every file must match it.
    """
    from moondream_iac.weights.lock import WeightsLock
    from moondream_iac.weights.progress import ensure_log_handler
    from moondream_iac.weights.sync import sync_weights

    ensure_log_handler()
    token = None
    if token_env:
        token = os.environ.get(token_env)
        if not token:
            raise WeightsError(
                f"environment variable {token_env} is empty or not set; attach the Modal secret "
                "that defines it to the weights function"
            )

    pin = WeightsLock.from_dict(pinned) if pinned else None
    lock = sync_weights(repo, revision, Path(root), token=token, pinned=pin)
    return lock.to_dict()


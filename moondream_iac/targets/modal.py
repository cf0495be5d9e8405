"""The Modal target: the Target interface on top of the functions in modal_target.

Modal itself is imported only inside modal_target and in ``lock``, so building a
ModalTarget for a plan costs nothing until a method talks to Modal.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moondream_iac.errors import TargetError
from moondream_iac.smoke import get_health, request_headers
from moondream_iac.state.lock import record_lock
from moondream_iac.state.record import check_record, record_from_summary
from moondream_iac.targets.base import DeployOutcome

if TYPE_CHECKING:
    from moondream_iac.config.loader import LoadedConfig

# Seconds to wait for Modal's control plane before reporting it unreachable.
REACHABLE_TIMEOUT_S = 10.0
# Seconds to wait for /v1/health. An app scaled to zero must start a container first,
# which can take longer; the plan then gets no health document and reports the endpoint
# as not running.
HEALTH_TIMEOUT_S = 20.0
# The modal.Dict that holds one deployment lock entry per app name.
LOCK_DICT = "moondream-iac-locks"


class ModalTarget:
    """A Moondream app on Modal, deployed from the rendered app file."""

    name = "modal"

    def __init__(self, loaded: LoadedConfig, *, build_dir: Path = Path("build")) -> None:
        self.loaded = loaded
        self.spec = loaded.spec
        self.build_dir = Path(build_dir)

    def preflight(self, *, deploying: bool = True) -> None:
        functions = _functions()
        functions.check_credentials()
        functions.check_reachable(REACHABLE_TIMEOUT_S)

    def read_record(self) -> dict[str, Any] | None:
        where = f"Modal volume {self.spec.volume.name}"
        return check_record(_functions().read_record(self.spec), where=where)

    def write_record(self, record: dict[str, Any]) -> None:
        _functions().write_record(self.spec, record)

    def live_health(self) -> dict[str, Any] | None:
        # NOTE: on an app scaled to zero, this request starts a GPU container.
        record = self.read_record()
        url = (record or {}).get("url")
        if not url:
            return None
        return get_health(url, headers=request_headers(self.spec), timeout_s=HEALTH_TIMEOUT_S)

    def lock(self, holder: str) -> AbstractContextManager[Any]:
        import modal

        store = modal.Dict.from_name(
            LOCK_DICT, environment_name=self.spec.app.environment, create_if_missing=True
        )
        return record_lock(store, self.spec.app.name, holder, deployment=self._deployment())

    def sync_weights(self) -> dict[str, Any]:
        """Run the weights function on Modal; also write its lock beside the deploy file.

        The copy beside deploy.yaml is what a GitOps repository commits, so a reviewer
        sees the resolved commit sha and per-file hashes change in the pull request.
        """
        from moondream_iac.weights.lock import (
            WeightsLock,
            pin_difference,
            read_pinned_lock,
            write_lock,
        )

        path = Path(self.loaded.path).parent / "weights.lock"
        pinned = read_pinned_lock(path)
        lock = dict(_functions().sync_weights(
            self.spec, self._render(), pinned.to_dict() if pinned else None) or {})
        if not lock:
            return lock

        # An unchanged pin is left as it is, so a committed weights.lock shows no diff.
        synced = WeightsLock.from_dict(lock)
        if pinned is None or pin_difference(pinned, synced) is not None:
            write_lock(synced, path)
        return lock

    def deploy(self, *, tag: str) -> DeployOutcome:
        return _functions().deploy(self.spec, self._render(), tag=tag)

    def update_autoscaler(self) -> None:
        _functions().update_autoscaler(self.spec)

    def rollback(self) -> None:
        """Roll the app back one version; the stored record becomes the previous one again."""
        current = self.read_record()
        _functions().rollback(self.spec)
        previous = (current or {}).get("previous")
        if previous:
            self.write_record(record_from_summary(previous))

    def destroy(self) -> None:
        _functions().stop(self.spec)

    def stream_logs(self) -> Iterator[str]:
        return iter(())

    def _render(self) -> Path:
        from moondream_iac.render.renderer import render_to_dir

        return render_to_dir(self.spec, self.build_dir)

    def _deployment(self) -> str:
        environment = self.spec.app.environment or "default environment"
        return f"{self.spec.app.name} (Modal {environment})"


def _functions() -> Any:
    try:
        from moondream_iac.targets import modal_target
    except ImportError as error:
        raise TargetError(
            f"the Modal target cannot be loaded ({error}); install it with: "
            "pip install 'moondream-iac[modal]'"
        ) from None
    return modal_target

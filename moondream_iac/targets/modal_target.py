"""The Modal side of apply: credentials, reachability, weights, deploy, autoscaler, stop.

Written against modal 1.6.4, which is imported lazily inside the functions that talk to
Modal: ``check_credentials`` and ``check_reachable`` work without the SDK installed.

The applied record lives on the deployment's own volume as JSON at
``/.moondream_iac/applied/<app>.json``, so any machine with the Modal token reads the
same record. The weights use other paths of that volume (``hf/``, ``models/``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import io
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from moondream_iac.errors import MissingExtraError, TargetError
from moondream_iac.render.context import SERVE_CLASS, WEB_METHOD, WEIGHTS_FUNCTION
from moondream_iac.spec.schema import DeploySpec
from moondream_iac.targets.base import DeployOutcome

# Modal's control plane when neither MODAL_SERVER_URL nor the profile names another.
DEFAULT_SERVER_URL = "https://api.modal.com"
RECORD_DIR = "/.moondream_iac/applied"
# Modal deployment tags: letters, digits, '.', '_' and '-', at most 50 characters.
TAG_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,50}")
AUTH_HINT = "run `modal setup`, or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET"
# Seconds each function below waits for the control plane before it calls the SDK.
PREFLIGHT_TIMEOUT_S = 3.0


def check_credentials() -> None:
    """Raise TargetError in one line unless a Modal token is configured.

    Follows the SDK's lookup: MODAL_TOKEN_ID and MODAL_TOKEN_SECRET override the active
    profile of ``~/.modal.toml`` (or the file MODAL_CONFIG_PATH names). Only presence is
    checked here; Modal checks the token itself at the first call.
    """
    profile, path = _active_profile()
    token_id = os.environ.get("MODAL_TOKEN_ID") or profile.get("token_id")
    token_secret = os.environ.get("MODAL_TOKEN_SECRET") or profile.get("token_secret")
    if token_id and token_secret:
        return

    missing = [name for name, value in
               (("MODAL_TOKEN_ID", token_id), ("MODAL_TOKEN_SECRET", token_secret)) if not value]
    raise TargetError(
        f"no Modal token: {' and '.join(missing)} not set and no token in {path}; {AUTH_HINT}"
    )


def check_reachable(timeout_s: float = 3.0) -> None:
    """Raise TargetError in one line unless Modal's control plane accepts a TLS connection.

    The SDK alone retries an unreachable server for about 60 s. This check gives the TCP
    connect and the TLS handshake ``timeout_s`` seconds each.
    """
    url = server_url()
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        raise TargetError(f"invalid Modal server URL {url!r}: expected https://HOST[:PORT]")
    port = parts.port or (443 if parts.scheme == "https" else 80)

    try:
        with socket.create_connection((host, port), timeout=timeout_s) as connection:
            if parts.scheme == "https":
                context = ssl.create_default_context()
                with context.wrap_socket(connection, server_hostname=host):
                    pass
    except (OSError, ssl.SSLError) as error:
        reason = "timed out" if isinstance(error, TimeoutError) else (error.strerror or str(error))
        raise TargetError(
            f"cannot reach Modal at {host}:{port} within {timeout_s:g} s ({reason}); check the "
            "network or proxy, or MODAL_SERVER_URL"
        ) from None


def server_url() -> str:
    """Return the control-plane URL: MODAL_SERVER_URL, else the profile's, else Modal's default."""
    profile, _ = _active_profile()
    return os.environ.get("MODAL_SERVER_URL") or profile.get("server_url") or DEFAULT_SERVER_URL


def sync_weights(spec: DeploySpec, app_file: Path | None = None,
                 pinned: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the weights function of the app file in a short-lived Modal app; return the lock.

    The weights function belongs to a separate app (``<name>-weights``), so running it
    creates no GPU class and starts no serving container. Without ``app_file``, the spec
    is rendered into a temporary folder for this run. ``pinned`` (the weights.lock
    beside deploy.yaml, as a dict) makes the function refuse weights that differ from it.
    """
    modal = _import_modal()
    _preflight()
    if app_file is not None:
        return _run_weights(modal, spec, app_file, pinned)

    from moondream_iac.render.renderer import render_to_dir

    with tempfile.TemporaryDirectory(prefix="moondream-iac-") as folder:
        return _run_weights(modal, spec, render_to_dir(spec, Path(folder)), pinned)


def _run_weights(modal: Any, spec: DeploySpec, app_file: Path,
                 pinned: dict[str, Any] | None) -> dict[str, Any]:
    module = load_app_module(app_file)
    weights_function = getattr(module, WEIGHTS_FUNCTION)
    with _modal_errors(f"the weights step of {spec.model.repo}@{spec.model.revision}"):
        with _sdk_output(modal):
            with module.weights_app.run(environment_name=spec.app.environment):
                return dict(weights_function.remote(pinned))


def deploy(spec: DeploySpec, app_file: Path, *, tag: str, with_weights: bool = False) -> DeployOutcome:
    """Deploy the rendered app file as ``spec.app.name`` and return its URL ending in /v1.

    apply calls ``sync_weights`` first whenever the weights change, so the new
    containers find their snapshot on the volume; ``with_weights=True`` runs it here.
    The deploy itself uses modal.runner.deploy_app with the rolling strategy.
    """
    if not TAG_PATTERN.fullmatch(tag):
        raise TargetError(
            f"invalid deployment tag {tag!r}: use letters, digits, '.', '_' and '-', at most 50"
        )
    modal = _import_modal()
    _preflight()
    weights_lock = sync_weights(spec, app_file) if with_weights else None
    module = load_app_module(app_file)

    with _modal_errors(f"the deploy of app {spec.app.name!r}"):
        with _sdk_output(modal):
            result = modal.runner.deploy_app(
                module.app, name=spec.app.name, environment_name=spec.app.environment, tag=tag
            )
        url = web_url(spec)

    details: dict[str, Any] = {
        "app_id": result.app_id,
        "app_page_url": result.app_page_url,
        "tag": tag,
        "warnings": list(result.warnings),
    }
    if weights_lock is not None:
        details["weights_lock"] = weights_lock
    return DeployOutcome(url=url, details=details)


def web_url(spec: DeploySpec) -> str:
    """Return the deployed endpoint's base URL, ``https://...modal.run/v1``."""
    modal = _import_modal()
    _preflight()
    with _modal_errors(f"the lookup of app {spec.app.name!r}"):
        served = modal.Cls.from_name(spec.app.name, SERVE_CLASS, environment_name=spec.app.environment)
        url = getattr(served(), WEB_METHOD).get_web_url()
    if not url:
        raise TargetError(f"app {spec.app.name!r} has no web URL; redeploy it with `moondream-iac apply`")
    return url.rstrip("/") + "/v1"


def update_autoscaler(spec: DeploySpec) -> None:
    """Apply the spec's autoscaler settings to the deployed class without a redeploy.

    The next deploy resets them to the values in the app file, which come from the same spec.
    """
    modal = _import_modal()
    _preflight()
    scaling = spec.autoscaling
    options: dict[str, int] = {
        "min_containers": scaling.min_containers,
        "buffer_containers": scaling.buffer_containers,
        "scaledown_window": scaling.scaledown_window,
    }
    # NOTE: Modal keeps the current max_containers when it is not passed, so changing the
    # spec from a number to null (no limit) takes a redeploy.
    if scaling.max_containers is not None:
        options["max_containers"] = scaling.max_containers

    with _modal_errors(f"the autoscaler update of app {spec.app.name!r}"):
        served = modal.Cls.from_name(spec.app.name, SERVE_CLASS, environment_name=spec.app.environment)
        served().update_autoscaler(**options)


def stop(spec: DeploySpec) -> None:
    """Stop the deployed app and its containers; an app that does not exist is left alone.

    The weights volume and the applied record on it are kept.
    """
    modal = _import_modal()
    _preflight()
    with _modal_errors(f"stopping app {spec.app.name!r}"):
        try:
            app = modal.App.lookup(spec.app.name, environment_name=spec.app.environment)
        except modal.exception.NotFoundError:
            return
        app.stop()


def rollback(spec: DeploySpec, version: int | None = None) -> None:
    """Redeploy the previous version of the app, or version ``version`` (N of vN).

    modal 1.6.4 offers rollback only in its CLI, so this runs ``modal app rollback``.
    """
    _import_modal()
    _preflight()
    command = [sys.executable, "-m", "modal", "app", "rollback", spec.app.name]
    if version is not None:
        command.append(f"v{int(version)}")
    if spec.app.environment:
        command += ["--env", spec.app.environment]

    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        reason = lines[-1] if lines else f"exit status {result.returncode}"
        raise TargetError(f"rollback of app {spec.app.name!r} failed: {reason}")


def read_record(spec: DeploySpec) -> dict[str, Any] | None:
    """Return the applied record stored on the deployment's volume, or None if there is none."""
    modal = _import_modal()
    _preflight()
    path = record_path(spec)
    with _modal_errors(f"reading {path} from volume {spec.volume.name!r}"):
        volume = modal.Volume.from_name(spec.volume.name, environment_name=spec.app.environment)
        try:
            data = b"".join(volume.read_file(path))
        except (FileNotFoundError, modal.exception.NotFoundError):
            return None

    try:
        record = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise TargetError(
            f"the applied record {path} on volume {spec.volume.name!r} is not valid JSON "
            f"({error}); remove it with `modal volume rm {spec.volume.name} {path}` and apply again"
        ) from None
    return record if isinstance(record, dict) else None


def write_record(spec: DeploySpec, record: dict[str, Any]) -> None:
    """Store ``record`` as JSON on the deployment's volume, replacing the previous one."""
    modal = _import_modal()
    _preflight()
    path = record_path(spec)
    data = (json.dumps(record, indent=2, sort_keys=True) + "\n").encode("utf-8")
    with _modal_errors(f"writing {path} to volume {spec.volume.name!r}"):
        volume = modal.Volume.from_name(
            spec.volume.name, environment_name=spec.app.environment, create_if_missing=True
        )
        with volume.batch_upload(force=True) as batch:
            batch.put_file(io.BytesIO(data), path)


def record_path(spec: DeploySpec) -> str:
    """Return the path of the applied record inside the volume."""
    return f"{RECORD_DIR}/{spec.app.name}.json"


def load_app_module(app_file: Path) -> ModuleType:
    """Import the rendered app file the way `modal deploy FILE` does and return the module.

    The module is registered under the file's stem, because Modal's containers import
    the app file by that name.
    """
    path = Path(app_file).resolve()
    name = inspect.getmodulename(str(path))
    if name is None or "." in name:
        raise TargetError(f"invalid app file name {path.name!r}: expected NAME.py")
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))

    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise TargetError(f"cannot import the app file {path}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as error:
        raise TargetError(f"importing the app file {path} failed: {error}") from error
    return module


def _preflight() -> None:
    """Fail in one line within seconds when there is no token or no route to Modal."""
    check_credentials()
    check_reachable(PREFLIGHT_TIMEOUT_S)


@contextlib.contextmanager
def _sdk_output(modal: Any) -> Iterator[None]:
    """Show the SDK's progress and container logs on stderr, keeping stdout for --json output.

    modal 1.6.4 prints through a rich Console that looks up sys.stdout at each write.
    """
    with modal.enable_output(), contextlib.redirect_stdout(sys.stderr):
        yield


def _import_modal() -> Any:
    try:
        import modal
        import modal.exception
        import modal.runner
    except ImportError:
        raise MissingExtraError("modal", "modal") from None
    return modal


def _active_profile() -> tuple[dict[str, Any], str]:
    """Return the active profile of the Modal config file (empty if none) and the file's path."""
    path = os.environ.get("MODAL_CONFIG_PATH") or os.path.expanduser("~/.modal.toml")
    try:
        with open(path, "rb") as stream:
            profiles = tomllib.load(stream)
    except FileNotFoundError:
        return {}, path
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise TargetError(f"cannot read the Modal config file {path}: {error}; {AUTH_HINT}") from None

    name = os.environ.get("MODAL_PROFILE")
    if not name:
        active = [key for key, values in profiles.items()
                  if isinstance(values, dict) and values.get("active") is True]
        name = active[0] if active else "default"
    profile = profiles.get(name)
    return (profile if isinstance(profile, dict) else {}), path


@contextlib.contextmanager
def _modal_errors(step: str) -> Iterator[None]:
    """Turn the SDK's errors into one-line TargetErrors that name the step that failed."""
    import modal.exception

    try:
        yield
    except modal.exception.AuthError as error:
        raise TargetError(
            f"{step} failed: Modal rejected the token ({_first_line(error)}); {AUTH_HINT}"
        ) from error
    except modal.exception.ConnectionError as error:
        raise TargetError(f"{step} failed: cannot reach Modal ({_first_line(error)})") from error
    except modal.exception.Error as error:
        raise TargetError(f"{step} failed: {_first_line(error)}") from error


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__

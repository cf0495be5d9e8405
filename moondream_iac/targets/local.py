"""The local target: the serving runtime under uvicorn on this machine, from a local weights folder.

Files of one deployment live in its state folder, by default
``<deploy file folder>/.moondream_iac/local/<app name>[-<environment>]/``:

    record.json            the last applied record (written by apply)
    record.previous.json   the record before it, which rollback restores
    server.pid             JSON: pid, start time, command line, port, spec hash, model sha
    server.log             stdout and stderr of the server (server.log.1: the run before)
    apply.lock             held by one apply at a time
    apply.lock.holder.json who holds apply.lock, and since when

The API key travels to the server only through its environment, never on the command
line and never into any of these files.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from moondream_iac.config.loader import LoadedConfig
from moondream_iac.errors import MissingExtraError, TargetError
from moondream_iac.spec.runtime_env import SETTINGS_PREFIX, runtime_settings
from moondream_iac.spec.schema import DeploySpec, spec_hash
from moondream_iac.targets.base import DeployOutcome
from moondream_iac.targets import local_process as proc
from moondream_iac.weights.layout import write_atomic

logger = logging.getLogger("moondream_iac.targets.local")

HUB_TOKEN_ENV = "HF_TOKEN"
# Hub tokens the server never needs: it loads from the local folder with the hub offline.
HUB_TOKEN_NAMES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
WEIGHTS_LOCK_NAME = "weights.lock"
# Record fields that change on every apply without changing what is deployed. A record
# that differs from the current one only in these does not replace the kept previous one.
VOLATILE_RECORD_KEYS = ("applied_at", "applied_by", "created_at", "updated_at", "tag")
RUNTIME_MODULES = ("torch", "transformers", "fastapi", "uvicorn", "huggingface_hub")


@dataclass(frozen=True)
class Snapshot:
    """A synced model snapshot on the weights root: its folder, lock file and commit sha."""

    root: Path
    model_dir: Path
    lock_path: Path
    sha: str


class LocalTarget:
    """Deploy target that runs ``python -m moondream_iac.server`` as a background process."""

    name = "local"

    def __init__(self, loaded: LoadedConfig, *, state_dir: Path | None = None) -> None:
        self.loaded = loaded
        self.spec: DeploySpec = loaded.spec
        self.deploy_dir = Path(loaded.path).resolve().parent
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir(loaded)

    # Paths

    @property
    def weights_root(self) -> Path:
        return weights_root(self.spec, self.deploy_dir)

    @property
    def weights_lock_path(self) -> Path:
        """The weights lock beside the deploy file, written by every weights sync."""
        return self.deploy_dir / WEIGHTS_LOCK_NAME

    @property
    def pid_path(self) -> Path:
        return self.state_dir / "server.pid"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "server.log"

    @property
    def record_path(self) -> Path:
        return self.state_dir / "record.json"

    @property
    def previous_record_path(self) -> Path:
        return self.state_dir / "record.previous.json"

    @property
    def lock_path(self) -> Path:
        return self.state_dir / "apply.lock"

    @property
    def url(self) -> str:
        return proc.base_url(self.spec.local.host, self.spec.local.port)

    # Checks

    def preflight(self, *, deploying: bool = True) -> None:
        """Raise when a deploy would lack the runtime packages or the API key variable."""
        import importlib.util

        if not deploying:
            return
        for module in RUNTIME_MODULES:
            if importlib.util.find_spec(module) is None:
                raise MissingExtraError(module, "runtime")
        api_key(self.spec)

    # Record

    def read_record(self) -> dict[str, Any] | None:
        """Return the last applied record, or None when nothing was applied here.

        Raises TargetError naming the file when it is not a record this tool reads.
        """
        from moondream_iac.state.record import check_record

        return check_record(_read_json(self.record_path), where=str(self.record_path))

    def write_record(self, record: dict[str, Any]) -> None:
        """Store ``record``; the record it replaces is kept for rollback when they differ."""
        current = _read_json(self.record_path)
        if current is not None and _record_identity(current) != _record_identity(record):
            write_atomic(self.previous_record_path, _json_text(current))
        write_atomic(self.record_path, _json_text(record))

    # Lock

    @contextmanager
    def lock(self, holder: str) -> Iterator[None]:
        """Hold the apply lock of this deployment; raise LockHeldError naming the holder and since when.

        It does not wait. ``holder`` names what the holder does (``apply``, ``destroy``)
        and is written, with host, pid and time, beside the lock while it is held.
        """
        from moondream_iac.state.lock import file_lock

        deployment = f"local:{self.state_dir.name} ({self.state_dir})"
        with file_lock(self.lock_path, holder, deployment=deployment):
            yield

    # Weights

    def sync_weights(self) -> dict[str, Any]:
        """Download and verify the pinned weights into local.weights_dir; return the weights lock.

        The lock is also written beside the deploy file as weights.lock. A hub token is
        read from HF_TOKEN when that variable is set.
        """
        from moondream_iac.weights.sync import sync_weights

        token = os.environ.get(HUB_TOKEN_ENV) or None
        lock = sync_weights(
            self.spec.model.repo,
            self.spec.model.revision,
            self.weights_root,
            token=token,
            lock_out=self.weights_lock_path,
        )
        return lock.to_dict()

    # Deploy

    def deploy(self, *, tag: str, restart: bool = False) -> DeployOutcome:
        """Start the server, or restart it when the spec or the weights changed; wait until ready.

        A server that already runs this spec hash on these weights and is healthy is
        left as it is, unless ``restart`` is true (needed after changing only the API key,
        which the spec does not contain).
        """
        return self._deploy_spec(self.spec, tag=tag, restart=restart)

    def _deploy_spec(self, spec: DeploySpec, *, tag: str, restart: bool = False) -> DeployOutcome:
        key = api_key(spec)
        snapshot = find_snapshot(spec, self.deploy_dir)
        expected_hash = spec_hash(spec)

        running = proc.running_record(self.pid_path)
        if running is not None and not restart and _serves(running, spec, expected_hash, snapshot):
            health = proc.fetch_health(running.url)
            if health is not None and proc.is_ready(health, expected_hash):
                logger.info("the local server (pid %d) already serves spec %s", running.pid, expected_hash)
                return self._outcome(running, restarted=False)
        if running is not None:
            proc.stop_process(running)
            self.pid_path.unlink(missing_ok=True)

        record = self._start(spec, snapshot, key, tag=tag, spec_digest=expected_hash,
                             after_stop=running is not None)
        return self._outcome(record, restarted=running is not None)

    def _start(self, spec: DeploySpec, snapshot: Snapshot, key: str | None, *,
               tag: str, spec_digest: str, after_stop: bool) -> proc.PidRecord:
        host, port = spec.local.host, spec.local.port
        proc.check_port_free(host, port, wait_s=proc.PORT_RELEASE_WAIT_S if after_stop else 0.0)

        env = child_environment(spec, snapshot, key, spec_digest=spec_digest)
        logger.info("starting the local server on %s:%d (log: %s)", host, port, self.log_path)
        process = proc.start_server(env=env, log_path=self.log_path, cwd=self.deploy_dir)
        try:
            record = self._pid_record(process.pid, spec, snapshot, tag=tag, spec_digest=spec_digest,
                                      cmdline=proc.server_command(), own_group=True)
        except TargetError:
            code = process.wait(timeout=proc.STOP_TIMEOUT_S)
            raise TargetError(
                f"the local server exited with code {code} right after it started"
                + proc.log_tail_text(self.log_path)
            ) from None
        proc.write_pid_file(self.pid_path, record)

        try:
            proc.wait_until_ready(
                process, record.url, timeout_s=spec.timeouts.startup,
                log_path=self.log_path, expected_spec_hash=spec_digest,
            )
        except BaseException:
            proc.stop_process(record)
            process.wait()
            self.pid_path.unlink(missing_ok=True)
            raise
        return record

    def _pid_record(self, pid: int, spec: DeploySpec, snapshot: Snapshot, *, tag: str,
                    spec_digest: str, foreground: bool = False,
                    cmdline: list[str] | None = None, own_group: bool = False) -> proc.PidRecord:
        """Describe process ``pid`` for the pid file.

        Pass ``cmdline`` for a process just started: until its execve finishes setting up
        the new program, /proc/PID/cmdline reads as empty, even after Popen returned.
        """
        token = proc.process_start_token(pid)
        if cmdline is None:
            cmdline = proc.process_cmdline(pid)
        if token is None or cmdline is None:
            raise TargetError(f"process {pid} exited before its pid file was written")
        return proc.PidRecord(
            pid=pid, start_token=token, cmdline=cmdline,
            host=spec.local.host, port=spec.local.port,
            spec_hash=spec_digest, model_sha=snapshot.sha, tag=tag,
            started_at=_utc_now(), log_file=str(self.log_path), foreground=foreground,
            own_group=own_group,
        )

    def _outcome(self, record: proc.PidRecord, *, restarted: bool) -> DeployOutcome:
        return DeployOutcome(
            url=record.url,
            details={
                "pid": record.pid,
                "log_file": record.log_file,
                "spec_hash": record.spec_hash,
                "model_sha": record.model_sha,
                "tag": record.tag,
                "restarted": restarted,
            },
        )

    # Foreground

    def serve_foreground(self, *, tag: str = "foreground") -> None:
        """Serve in this process until Ctrl-C (SIGINT) or SIGTERM, with the same settings as deploy.

        A background server of this deployment is stopped first. The pid file names this
        process while it serves, so ``status`` and ``destroy`` from another shell see it.
        huggingface_hub and transformers read HF_HOME and HF_MODULES_CACHE once, at
        import. So when either is already imported (by a weights sync in this process),
        exec replaces this process with ``python -m moondream_iac.server``. The pid stays
        the same, but this function does not return, and the pid file is left behind as
        a stale file (removed by the next status or deploy) after the server stops.
        """
        spec = self.spec
        key = api_key(spec)
        snapshot = find_snapshot(spec, self.deploy_dir)
        digest = spec_hash(spec)

        running = proc.running_record(self.pid_path)
        if running is not None:
            proc.stop_process(running)
            self.pid_path.unlink(missing_ok=True)
        proc.check_port_free(spec.local.host, spec.local.port,
                             wait_s=proc.PORT_RELEASE_WAIT_S if running is not None else 0.0)

        env = child_environment(spec, snapshot, key, spec_digest=digest)
        record = self._pid_record(os.getpid(), spec, snapshot, tag=tag, spec_digest=digest,
                                  foreground=True)
        if not _hub_imported() and not proc.is_server_cmdline(record.cmdline, foreground=True):
            logger.warning(
                "this process runs as %r, not as `moondream-iac apply --foreground`, so status "
                "and destroy from another shell will treat its pid file as stale",
                " ".join(record.cmdline)[:200],
            )
        if _hub_imported():
            self._exec_server(record, env)

        for name in [name for name in os.environ if name.startswith(SETTINGS_PREFIX)]:
            del os.environ[name]
        os.environ.update({name: value for name, value in env.items()
                           if name.startswith(SETTINGS_PREFIX) or name.startswith("HF_")
                           or name == "TRANSFORMERS_OFFLINE"})
        proc.write_pid_file(self.pid_path, record)
        try:
            _run_server_here()
        finally:
            current = proc.read_pid_file(self.pid_path)
            if current is not None and current.pid == os.getpid():
                self.pid_path.unlink(missing_ok=True)

    def _exec_server(self, record: proc.PidRecord, env: dict[str, str]) -> None:
        """Replace this process with the server; exec keeps the pid and the start time."""
        command = proc.server_command()
        logger.info("replacing this process with the server (pid %d stays)", record.pid)
        proc.write_pid_file(self.pid_path, replace(record, cmdline=command))
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(command[0], command, env)

    # Inspect

    def live_health(self) -> dict[str, Any] | None:
        """Return the running server's /v1/health document, or None when it is not running."""
        running = proc.running_record(self.pid_path)
        if running is None:
            return None
        return proc.fetch_health(running.url)

    def status(self) -> dict[str, Any]:
        """Return the URL, pid, health, log file and spec hash of the running server."""
        running = proc.running_record(self.pid_path)
        if running is None:
            return {"running": False, "url": self.url, "pid": None, "health": None,
                    "log_file": str(self.log_path)}
        return {
            "running": True,
            "url": running.url,
            "pid": running.pid,
            "foreground": running.foreground,
            "started_at": running.started_at,
            "spec_hash": running.spec_hash,
            "model_sha": running.model_sha,
            "tag": running.tag,
            "health": proc.fetch_health(running.url),
            "log_file": running.log_file,
        }

    def stream_logs(self, *, lines: int | None = None) -> Iterator[str]:
        """Yield the lines of the server log (the last ``lines`` when given); it does not follow."""
        if lines is not None:
            yield from proc.log_tail(self.log_path, lines)
            return
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as log:
                for line in log:
                    yield line.rstrip("\n")
        except FileNotFoundError:
            return

    # Change and stop

    def update_autoscaler(self) -> None:
        """Do nothing: the local target runs one process, so there is nothing to scale."""
        logger.info("the local target runs one server process; autoscaling settings do not apply")

    def rollback(self) -> DeployOutcome:
        """Restart the server with the previous record's spec, and make that record current.

        The current record becomes the previous one, so a second rollback returns to it.
        """
        from moondream_iac.state.record import check_record

        previous = check_record(_read_json(self.previous_record_path),
                                where=str(self.previous_record_path))
        if previous is None:
            raise TargetError(
                f"no previous deployment is recorded in {self.previous_record_path}, so there "
                "is nothing to roll back to"
            )
        spec = _spec_from_record(previous, self.previous_record_path)
        outcome = self._deploy_spec(spec, tag=f"rollback-{_utc_now()}")

        current = self.read_record()
        write_atomic(self.record_path, _json_text(previous))
        if current is not None:
            write_atomic(self.previous_record_path, _json_text(current))
        return outcome

    def destroy(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and remove its pid file; the records stay."""
        running = proc.running_record(self.pid_path)
        if running is None:
            logger.info("no local server of this deployment is running")
            return
        proc.stop_process(running)
        self.pid_path.unlink(missing_ok=True)


# Paths and settings


def default_state_dir(loaded: LoadedConfig) -> Path:
    """Return ``<deploy file folder>/.moondream_iac/local/<app name>[-<environment>]``."""
    name = loaded.spec.app.name
    if loaded.environment:
        name = f"{name}-{loaded.environment}"
    return Path(loaded.path).resolve().parent / ".moondream_iac" / "local" / name


def weights_root(spec: DeploySpec, deploy_dir: Path) -> Path:
    """Return local.weights_dir as an absolute path; a relative one is under the deploy file's folder."""
    root = Path(spec.local.weights_dir).expanduser()
    return root if root.is_absolute() else deploy_dir / root


def api_key(spec: DeploySpec) -> str | None:
    """Return the API key for auth mode api_key from the environment variable auth.key_env.

    Raises TargetError in one line when the variable is unset or empty, and for auth
    mode proxy, which needs Modal's proxy in front of the server.
    """
    mode = spec.auth.mode
    if mode == "proxy":
        raise TargetError(
            "auth.mode proxy relies on Modal's proxy auth, which the local target does not "
            "have; set auth.mode to api_key or none for the local target"
        )
    if mode != "api_key":
        return None
    key = os.environ.get(spec.auth.key_env)
    if not key:
        name = spec.auth.key_env
        raise TargetError(
            f"auth.mode is api_key but the environment variable {name} is not set; "
            f"export {name}=<key> and rerun, or set auth.mode: none in deploy.yaml"
        )
    return key


def find_snapshot(spec: DeploySpec, deploy_dir: Path) -> Snapshot:
    """Return the synced snapshot of spec.model on the local weights root.

    Candidates come in this order: the active pointer, the weights.lock beside the
    deploy file, then every lock on the root. The first whose repo and revision (or
    sha) match the spec, and whose folder and lock file exist, is returned.
    """
    from moondream_iac.errors import WeightsError
    from moondream_iac.weights.layout import WeightsLayout
    from moondream_iac.weights.lock import read_lock

    repo, revision = spec.model.repo, spec.model.revision
    root = weights_root(spec, deploy_dir)
    layout = WeightsLayout(root)

    shas: list[str] = []
    lock_files = [deploy_dir / WEIGHTS_LOCK_NAME, *layout.lock_paths(repo)]
    active = layout.read_active(repo)
    if active is not None and revision in (active.revision, active.sha):
        shas.append(active.sha)
    for path in lock_files:
        try:
            lock = read_lock(path)
        except WeightsError:
            continue
        if lock.repo == repo and revision in (lock.revision, lock.sha):
            shas.append(lock.sha)

    for sha in dict.fromkeys(shas):
        model_dir, lock_path = layout.model_dir(repo, sha), layout.lock_path(repo, sha)
        if model_dir.is_dir() and lock_path.is_file():
            return Snapshot(root=root, model_dir=model_dir, lock_path=lock_path, sha=sha)
    raise TargetError(
        f"no synced weights for {repo}@{revision} in {root}; run apply, whose weights "
        "step downloads them, or check local.weights_dir in deploy.yaml"
    )


def server_settings_environment(spec: DeploySpec, snapshot: Snapshot, *,
                                spec_digest: str) -> dict[str, str]:
    """Return the ``MOONDREAM_IAC_*`` variables that configure the server for ``spec``."""
    from moondream_iac.weights.revisions import revision_requirements

    revision = revision_requirements(spec.model.repo, spec.model.revision)
    settings = runtime_settings(spec, revision, dtype=spec.local.dtype, device=spec.local.device)
    local = {
        "MODEL_DIR": str(snapshot.model_dir),
        "LOCK_FILE": str(snapshot.lock_path),
        "SPEC_HASH": spec_digest,
        "HOST": spec.local.host,
        "PORT": str(spec.local.port),
    }
    settings.update({SETTINGS_PREFIX + name: value for name, value in local.items()})
    return settings


def child_environment(spec: DeploySpec, snapshot: Snapshot, key: str | None, *,
                      spec_digest: str) -> dict[str, str]:
    """Return the server's environment: this one without hub tokens and stale settings, plus the settings.

    The API key is set under auth.key_env only for auth mode api_key.
    """
    from moondream_iac.weights.layout import WeightsLayout

    env = proc.environment_without(
        os.environ, names=(*HUB_TOKEN_NAMES, spec.auth.key_env), prefixes=(SETTINGS_PREFIX,)
    )
    env.update(WeightsLayout(snapshot.root).env(offline=True))
    env.update(server_settings_environment(spec, snapshot, spec_digest=spec_digest))
    env["PYTHONUNBUFFERED"] = "1"
    _add_package_to_path(env)
    if key is not None:
        env[spec.auth.key_env] = key
    return env


def _add_package_to_path(env: dict[str, str]) -> None:
    """Let the server import this same copy of moondream_iac when it is not installed."""
    import moondream_iac

    package_parent = str(Path(moondream_iac.__file__).resolve().parents[1])
    if Path(package_parent).name in ("site-packages", "dist-packages"):
        return
    parts = [part for part in env.get("PYTHONPATH", "").split(os.pathsep) if part]
    if package_parent not in parts:
        env["PYTHONPATH"] = os.pathsep.join([package_parent, *parts])


def _serves(record: proc.PidRecord, spec: DeploySpec, digest: str, snapshot: Snapshot) -> bool:
    return (
        not record.foreground
        and record.spec_hash == digest
        and record.model_sha == snapshot.sha
        and record.host == spec.local.host
        and record.port == spec.local.port
    )


def _hub_imported() -> bool:
    return any(name in sys.modules for name in ("huggingface_hub", "transformers"))


def _run_server_here() -> None:
    """Build the server settings from the ``MOONDREAM_IAC_*`` variables and run uvicorn until it stops."""
    from moondream_iac.server.__main__ import serve
    from moondream_iac.server.settings import ServerSettings

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(ServerSettings.from_env())


# Records


def _spec_from_record(record: dict[str, Any], path: Path) -> DeploySpec:
    from pydantic import ValidationError

    data = record.get("spec")
    if not isinstance(data, dict):
        raise TargetError(f"the record {path} has no 'spec' mapping, so it cannot be redeployed")
    try:
        return DeploySpec.model_validate(data)
    except ValidationError as error:
        raise TargetError(
            f"the spec in {path} is no longer valid ({error.error_count()} problem(s), first: "
            f"{error.errors()[0]['msg']}); deploy a fixed deploy.yaml with apply instead"
        ) from None


def _record_identity(record: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key not in VOLATILE_RECORD_KEYS}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise TargetError(
            f"cannot read {path}: {error}; fix or delete the file and rerun"
        ) from None
    if not isinstance(data, dict):
        raise TargetError(f"{path} does not contain a JSON object; fix or delete the file and rerun")
    return data


def _json_text(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

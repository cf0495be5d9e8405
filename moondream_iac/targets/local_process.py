"""The background server process of the local target: pid file, start, readiness, stop.

A pid file records the pid together with the process's start time and command line.
A pid from the file is trusted only while a live process with that pid has the same
start time and command line, and only when that command line is the server's own
(``python -m moondream_iac.server``, or the CLI's ``--foreground`` form). So neither a
pid that the system reused for another program nor a forged pid file describing one
gets a signal. A whole process group is signalled only when the record marks it as
created by ``start_server`` (``own_group``) and the process still leads it.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from moondream_iac.errors import TargetError
from moondream_iac.weights.layout import write_atomic

logger = logging.getLogger("moondream_iac.targets.local")

SERVER_MODULE = "moondream_iac.server"
CLI_MODULE = "moondream_iac"
CLI_SCRIPT_NAMES = ("moondream-iac", "moondream_iac")
LOG_TAIL_LINES = 20
HEALTH_POLL_S = 0.25
HEALTH_REQUEST_TIMEOUT_S = 5.0
# After a stop, the kernel may hold the port for a moment: the main thread of the old
# process shows as exited while its other threads still close the listening socket.
PORT_RELEASE_WAIT_S = 5.0
STOP_TIMEOUT_S = 10.0
KILL_TIMEOUT_S = 5.0
# Hosts that mean "every interface": clients connect to loopback instead.
WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


@dataclass(frozen=True)
class PidRecord:
    """The content of the pid file: which process serves, since when, on which port.

    ``start_token`` is the process start time as the operating system reports it
    (clock ticks since boot on Linux). Together with ``cmdline`` it distinguishes the
    recorded process from a later process that got the same pid.
    """

    pid: int
    start_token: str
    cmdline: list[str]
    host: str
    port: int
    spec_hash: str
    model_sha: str
    tag: str
    started_at: str
    log_file: str
    foreground: bool = False
    # True when start_server started the process as the leader of a new session.
    own_group: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return base_url(self.host, self.port)


def base_url(host: str, port: int) -> str:
    """Return ``http://HOST:PORT/v1`` as a client on this machine reaches it."""
    connect = WILDCARD_HOSTS.get(host, host)
    if ":" in connect:
        connect = f"[{connect}]"
    return f"http://{connect}:{port}/v1"


# Pid file


def write_pid_file(path: Path, record: PidRecord) -> None:
    """Write ``record`` as JSON to ``path`` atomically."""
    write_atomic(path, json.dumps(asdict(record), indent=2, sort_keys=True) + "\n")


def read_pid_file(path: Path) -> PidRecord | None:
    """Return the pid file's record, or None when the file is missing or unreadable.

    An unreadable file (truncated, or from another version) is logged and treated as
    absent, because nothing in it can be trusted to signal a process.
    """
    try:
        data = json.loads(path.read_text("utf-8"))
        return PidRecord(**data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as error:
        logger.warning("ignoring the unreadable pid file %s: %s", path, error)
        return None


def running_record(path: Path) -> PidRecord | None:
    """Return the pid file's record when its process still runs; remove a stale file.

    The file is stale when the process is gone, is a zombie, when the pid now belongs
    to another program (different start time or command line), or when the recorded
    command line is not the server's.
    """
    record = read_pid_file(path)
    if record is None:
        path.unlink(missing_ok=True)
        return None
    if is_same_process(record):
        return record
    logger.info(
        "removing the stale pid file %s: process %d started at %s no longer runs",
        path, record.pid, record.started_at,
    )
    path.unlink(missing_ok=True)
    return None


# Process identity


def is_same_process(record: PidRecord) -> bool:
    """Return whether the pid of ``record`` is still the server process that the record describes."""
    if not is_server_cmdline(list(record.cmdline), foreground=record.foreground):
        return False
    _reap(record.pid)
    token = process_start_token(record.pid)
    if token is None or token != record.start_token:
        return False
    return process_cmdline(record.pid) == list(record.cmdline)


def is_server_cmdline(cmdline: list[str], *, foreground: bool) -> bool:
    """Return whether ``cmdline`` starts the server: ``server_command()``, or for a foreground
    record the CLI run with ``--foreground``.

    The interpreter path is not compared, because the CLI that reads the pid file may run
    under another Python than the one that started the server.
    """
    if len(cmdline) == 3 and cmdline[1:] == ["-m", SERVER_MODULE]:
        return True
    if not foreground or "--foreground" not in cmdline[1:]:
        return False
    # `python -m moondream_iac ...`, or the `moondream-iac` console script run by Python.
    runs_module = cmdline[1:3] == ["-m", CLI_MODULE]
    runs_script = any(Path(part).name in CLI_SCRIPT_NAMES for part in cmdline[:2])
    return runs_module or runs_script


def process_start_token(pid: int) -> str | None:
    """Return the start time of a live, non-zombie process ``pid``, or None when there is none."""
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc/self/stat").exists():
        try:
            text = stat.read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return None
        # The command name in brackets may contain spaces; the fields after it are fixed.
        fields = text[text.rindex(")") + 2:].split()
        state, start_ticks = fields[0], fields[19]
        return None if state in ("Z", "X") else start_ticks
    return _psutil_start_token(pid)


def process_cmdline(pid: int) -> list[str] | None:
    """Return the command line of process ``pid``, or None when it cannot be read."""
    if Path("/proc/self/cmdline").exists():
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return None
        return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]
    return _psutil_cmdline(pid)


def _psutil_start_token(pid: int) -> str | None:
    # NOTE: psutil is not a declared dependency; without /proc and without psutil every
    # pid file counts as stale, so destroy leaves the server running.
    try:
        import psutil
    except ImportError:
        logger.warning("cannot check process %d: no /proc and psutil is not installed", pid)
        return None
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return repr(process.create_time())
    except psutil.Error:
        return None


def _psutil_cmdline(pid: int) -> list[str] | None:
    try:
        import psutil

        return psutil.Process(pid).cmdline()
    except Exception:  # noqa: BLE001 - a missing psutil or any psutil error means "unknown"
        return None


def _reap(pid: int) -> None:
    """Collect the exit status of ``pid`` when it is a finished child of this process."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


# Start


def server_command() -> list[str]:
    """Return the command line that starts the server; it carries no setting and no secret."""
    return [sys.executable, "-m", SERVER_MODULE]


def start_server(
    *, env: Mapping[str, str], log_path: Path, cwd: Path
) -> subprocess.Popen[bytes]:
    """Start the server in a new session with stdout and stderr appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    _rotate_log(log_path)
    with open_log(log_path) as log:
        return subprocess.Popen(
            server_command(),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )


def open_log(log_path: Path) -> BinaryIO:
    """Open ``log_path`` for appending without following a symbolic link at that name.

    Raises TargetError when the name is a symbolic link, so the server's output never
    lands in a file the link points to.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
    try:
        descriptor = os.open(log_path, flags, 0o600)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise TargetError(
                f"the server log {log_path} is a symbolic link; delete it and rerun"
            ) from None
        raise TargetError(f"cannot open the server log {log_path}: {error.strerror or error}") from None
    return os.fdopen(descriptor, "ab")


def _rotate_log(log_path: Path) -> None:
    """Keep the previous run's log as ``<name>.1`` so each start begins a fresh log.

    os.replace renames the directory entry itself, so a symbolic link (even a dangling
    one) is moved aside rather than followed.
    """
    if os.path.lexists(log_path):
        os.replace(log_path, log_path.with_name(log_path.name + ".1"))


def check_port_free(host: str, port: int, *, wait_s: float = 0.0) -> None:
    """Raise TargetError when another program listens on ``host:port`` for longer than ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        error = _bind_error(host, port)
        if error is None:
            return
        if error.errno != errno.EADDRINUSE:
            raise TargetError(
                f"cannot listen on {host}:{port}: {error.strerror or error}; "
                "check local.host and local.port in deploy.yaml"
            )
        if time.monotonic() >= deadline:
            raise TargetError(
                f"port {port} on {host} is in use by another program; stop it or set "
                "local.port in deploy.yaml to a free port"
            )
        time.sleep(0.2)


def _bind_error(host: str, port: int) -> OSError | None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            return error
    return None


# Readiness


def fetch_health(url: str, *, timeout_s: float = HEALTH_REQUEST_TIMEOUT_S) -> dict[str, Any] | None:
    """Return the JSON body of ``GET {url}/health``, or None when no server responds with JSON.

    A server that is still loading may respond with 503 and a health document. That
    document is returned too, because its ``status`` field reports the loading state.
    """
    import httpx

    try:
        # trust_env=False: a proxy from HTTP_PROXY must not sit between this machine and itself.
        response = httpx.get(f"{url}/health", timeout=timeout_s, trust_env=False)
        body = response.json()
    except (httpx.HTTPError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def wait_until_ready(
    process: subprocess.Popen[bytes],
    url: str,
    *,
    timeout_s: float,
    log_path: Path,
    expected_spec_hash: str,
) -> dict[str, Any]:
    """Poll ``/v1/health`` until it reports ready and return that document.

    Raises TargetError with the last log lines when the process exits, when the model
    fails to load, or when ``timeout_s`` passes first.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        code = process.poll()
        if code is not None:
            raise TargetError(
                f"the local server exited with code {code} before it was ready"
                + log_tail_text(log_path)
            )

        health = fetch_health(url)
        if health is not None:
            if is_ready(health, expected_spec_hash):
                return health
            if health.get("status") == "failed":
                raise TargetError(
                    f"the local server failed to load the model: {health.get('error')}"
                    + log_tail_text(log_path)
                )

        if time.monotonic() >= deadline:
            raise TargetError(
                f"the local server at {url} was not ready after {timeout_s:g} s "
                "(timeouts.startup in deploy.yaml); raise that limit if loading is slow"
                + log_tail_text(log_path)
            )
        time.sleep(HEALTH_POLL_S)


def is_ready(health: dict[str, Any], expected_spec_hash: str) -> bool:
    """Return whether ``health`` reports a ready server running the expected spec."""
    # Another server listening on the port (one that outlived a crash, say) reports
    # another spec hash, so it is not mistaken for the one just started.
    return health.get("status") == "ready" and health.get("spec_hash") == expected_spec_hash


def log_tail(log_path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    """Return the last ``lines`` lines of the log file, or an empty list when there is none."""
    try:
        descriptor = os.open(log_path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return []
    except OSError as error:
        # A symbolic link (ELOOP) is not read, so an error message never shows another file.
        return [f"(cannot read {log_path}: {error.strerror or error})"]
    with os.fdopen(descriptor, "rb") as log:
        text = log.read().decode("utf-8", errors="replace")
    return text.splitlines()[-lines:]


def log_tail_text(log_path: Path) -> str:
    """Return the last log lines, indented under a heading, for an error message."""
    tail = log_tail(log_path)
    if not tail:
        return f"; the log {log_path} is empty"
    body = "\n".join(f"  {line}" for line in tail)
    return f"; last lines of {log_path}:\n{body}"


# Stop


def stop_process(
    record: PidRecord,
    *,
    timeout_s: float = STOP_TIMEOUT_S,
    is_alive: Callable[[PidRecord], bool] = is_same_process,
) -> None:
    """Send SIGTERM, wait up to ``timeout_s``, then SIGKILL; raise TargetError if it survives."""
    if not is_alive(record):
        return
    logger.info("stopping the local server (pid %d) with SIGTERM", record.pid)
    _signal(record, signal.SIGTERM)
    if _wait_gone(record, timeout_s, is_alive):
        _wait_reaped(record.pid)
        return

    logger.warning(
        "the local server (pid %d) did not stop within %g s; sending SIGKILL",
        record.pid, timeout_s,
    )
    _signal(record, signal.SIGKILL)
    if not _wait_gone(record, KILL_TIMEOUT_S, is_alive):
        raise TargetError(
            f"the local server (pid {record.pid}) is still running after SIGKILL; "
            f"stop it by hand with: kill -9 {record.pid}"
        )
    _wait_reaped(record.pid)


def _wait_reaped(pid: int, timeout_s: float = 3.0) -> None:
    """Wait until ``pid`` has left the process table, so its sockets are closed.

    The main thread of an exiting process shows as a zombie while its other threads may
    still hold the listening socket. The kernel reports the pid to waitpid only after
    the last thread exits. A zombie that another parent has not reaped yet is waited
    for up to ``timeout_s``.
    """
    if not Path("/proc/self").exists():
        return
    deadline = time.monotonic() + timeout_s
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.05)


def _signal(record: PidRecord, signum: signal.Signals) -> None:
    try:
        if record.own_group and _leads_group(record.pid):
            os.killpg(record.pid, signum)
        else:
            os.kill(record.pid, signum)
    except ProcessLookupError:
        pass


def _leads_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


def _wait_gone(record: PidRecord, timeout_s: float, is_alive: Callable[[PidRecord], bool]) -> bool:
    deadline = time.monotonic() + timeout_s
    while is_alive(record):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def environment_without(environ: Mapping[str, str], names: Sequence[str],
                        prefixes: Sequence[str] = ()) -> dict[str, str]:
    """Return a copy of ``environ`` without ``names`` and without names starting with ``prefixes``."""
    return {
        name: value for name, value in environ.items()
        if name not in names and not any(name.startswith(prefix) for prefix in prefixes)
    }

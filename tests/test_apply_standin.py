"""A stand-in deploy target for the GitOps tests: a real HTTP server in its own process.

``StandInTarget`` follows the Target interface the way a local target does: the record
is a JSON file, the lock is a file lock, deploy starts a server process that outlives
the CLI run, and destroy stops it. The server speaks the Moondream routes and reports
the spec hash and revision in ``/v1/health``, so plan, apply, drift and the smoke test
all run over real HTTP on 127.0.0.1.

Run as a script:

- ``python tests/test_apply_standin.py serve --port P --spec-hash H ...`` runs the server;
- ``python tests/test_apply_standin.py cli ARGS`` runs the real CLI with this target
  registered as ``local``.

Environment knobs read by ``deploy`` (set them on the CLI process):
``STANDIN_BROKEN_ROUTE`` makes one route return 500; ``STANDIN_STARTUP_S`` delays
readiness; ``STANDIN_DEPLOY_PAUSE_S`` sleeps inside deploy, to hold the lock longer.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()
ROOT = SCRIPT.parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from moondream_iac.state.lock import file_lock  # noqa: E402
from moondream_iac.state.record import check_record  # noqa: E402
from moondream_iac.targets.base import DeployOutcome  # noqa: E402

ROUTE_BODIES = {
    "point": {"points": [{"x": 0.5, "y": 0.5}]},
    "detect": {"objects": [{"x_min": 0.25, "y_min": 0.25, "x_max": 0.75, "y_max": 0.75}]},
    "query": {"answer": "blue"},
    "caption": {"caption": "a blue square"},
}


class StandInTarget:
    """A deployment served by a stand-in Moondream server process on 127.0.0.1."""

    name = "local"

    def __init__(self, loaded: Any, *, build_dir: Path = Path("build")) -> None:
        self.spec = loaded.spec
        self.state_dir = Path(loaded.path).resolve().parent / ".moondream_iac" / "standin"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.url = f"http://{self.spec.local.host}:{self.spec.local.port}/v1"

    def preflight(self, *, deploying: bool = True) -> None:
        return None

    def read_record(self) -> dict[str, Any] | None:
        path = self.state_dir / "record.json"
        if not path.exists():
            return None
        return check_record(json.loads(path.read_text("utf-8")), where=str(path))

    def write_record(self, record: dict[str, Any]) -> None:
        """Store ``record``; the one it replaces is kept for rollback, as the local target does."""
        path = self.state_dir / "record.json"
        if path.exists():
            path.replace(self.state_dir / "record.previous.json")
        path.write_text(json.dumps(record, indent=2), encoding="utf-8")

    def live_health(self) -> dict[str, Any] | None:
        from moondream_iac.smoke import get_health

        key = os.environ.get(self.spec.auth.key_env) if self.spec.auth.mode == "api_key" else None
        return get_health(self.url, api_key=key, timeout_s=2.0)

    def lock(self, holder: str) -> Any:
        return file_lock(self.state_dir / "deploy.lock", holder,
                         deployment=f"{self.spec.app.name} (local)")

    def sync_weights(self) -> dict[str, Any]:
        return {"repo": self.spec.model.repo, "revision": self.spec.model.revision,
                "sha": "0" * 40, "files": {}}

    def deploy(self, *, tag: str) -> DeployOutcome:
        from moondream_iac.spec.schema import spec_hash

        time.sleep(float(os.environ.get("STANDIN_DEPLOY_PAUSE_S", "0")))
        self.destroy()
        pid = start_server(
            self.spec.local.port, spec_hash=spec_hash(self.spec),
            repo=self.spec.model.repo, revision=self.spec.model.revision,
            key_env=self.spec.auth.key_env if self.spec.auth.mode == "api_key" else "",
            broken_route=os.environ.get("STANDIN_BROKEN_ROUTE", ""),
            startup_s=float(os.environ.get("STANDIN_STARTUP_S", "0")),
            log_path=self.state_dir / "server.log",
        )
        (self.state_dir / "server.pid").write_text(str(pid), encoding="utf-8")
        (self.state_dir / "deploys.log").open("a").write(f"{tag}\n")
        return DeployOutcome(self.url, {"pid": pid, "tag": tag})

    def update_autoscaler(self) -> None:
        autoscaling = self.spec.autoscaling.model_dump(mode="json")
        (self.state_dir / "autoscaler.json").write_text(json.dumps(autoscaling), "utf-8")

    def rollback(self) -> None:
        """Serve the previous record's spec again and make that record current."""
        previous_path = self.state_dir / "record.previous.json"
        record = json.loads(previous_path.read_text("utf-8"))
        self.destroy()
        spec = record["spec"]
        pid = start_server(
            self.spec.local.port, spec_hash=record["spec_hash"], repo=spec["model"]["repo"],
            revision=spec["model"]["revision"],
            key_env=spec["auth"]["key_env"] if spec["auth"]["mode"] == "api_key" else "",
            broken_route="", startup_s=0.0, log_path=self.state_dir / "server.log",
        )
        (self.state_dir / "server.pid").write_text(str(pid), encoding="utf-8")
        self.write_record(record)

    def destroy(self) -> None:
        pid_file = self.state_dir / "server.pid"
        if pid_file.exists():
            stop_server(int(pid_file.read_text("utf-8")))
            pid_file.unlink()

    def stream_logs(self) -> Iterator[str]:
        return iter(())


def start_server(port: int, *, spec_hash: str, repo: str, revision: str, key_env: str,
                 broken_route: str, startup_s: float, log_path: Path) -> int:
    """Start the stand-in server in its own session; return its pid once it listens."""
    command = [sys.executable, str(SCRIPT), "serve", "--port", str(port),
               "--spec-hash", spec_hash, "--repo", repo, "--revision", revision,
               "--key-env", key_env, "--broken-route", broken_route,
               "--startup-s", str(startup_s)]
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
    _wait_listening(port, process)
    return process.pid


def stop_server(pid: int) -> None:
    """Stop the server process ``pid`` (started by start_server) and wait for it to exit."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            finished = _gone(pid)
        if finished:
            return
        time.sleep(0.05)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _wait_listening(port: int, process: subprocess.Popen) -> None:
    import socket

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the stand-in server exited with status {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"the stand-in server did not listen on port {port} within 20 s")


def serve(arguments: argparse.Namespace) -> None:
    """Serve the stand-in Moondream API until SIGTERM."""
    started = time.monotonic()
    api_key = os.environ.get(arguments.key_env, "") if arguments.key_env else ""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return None

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorised(self) -> bool:
            if not api_key:
                return True
            sent = self.headers.get("X-Moondream-Auth", "")
            return hmac.compare_digest(sent.encode("utf-8"), api_key.encode("utf-8"))

        def do_GET(self) -> None:
            if self.path != "/v1/health":
                self._send(404, {"error": "not found"})
                return
            if not self._authorised():
                # Like an endpoint behind Modal's proxy auth, health needs credentials too.
                self._send(401, {"error": "missing or invalid API key"})
                return
            ready = time.monotonic() - started >= arguments.startup_s
            self._send(200 if ready else 503, {
                "status": "ready" if ready else "loading", "live": True, "ready": ready,
                "error": None, "model_repo": arguments.repo, "revision": arguments.revision,
                "spec_hash": arguments.spec_hash,
            })

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            route = self.path.removeprefix("/v1/")
            if route not in ROUTE_BODIES:
                self._send(404, {"error": "not found"})
            elif not self._authorised():
                self._send(401, {"error": "missing or invalid API key"})
            elif route == arguments.broken_route or not body.get("image_url"):
                self._send(500, {"error": "stand-in failure"})
            else:
                self._send(200, {**ROUTE_BODIES[route], "request_id": "standin"})

    server = ThreadingHTTPServer(("127.0.0.1", arguments.port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()


def run_cli(arguments: list[str]) -> None:
    """Run the real CLI with StandInTarget registered as the local target."""
    from moondream_iac.cli import main
    from moondream_iac.targets import register_target

    register_target("local", StandInTarget)
    sys.argv = ["moondream_iac", *arguments]
    main()


@contextmanager
def served(port: int, **options: Any) -> Iterator[int]:
    """Run a stand-in server outside any target (a change made behind the tool's back)."""
    pid = start_server(port, **options)
    try:
        yield pid
    finally:
        stop_server(pid)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--spec-hash", default="")
    parser.add_argument("--repo", default="")
    parser.add_argument("--revision", default="")
    parser.add_argument("--key-env", default="")
    parser.add_argument("--broken-route", default="")
    parser.add_argument("--startup-s", type=float, default=0.0)
    return parser.parse_args(argv)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(_parse(sys.argv[2:]))
    elif sys.argv[1] == "cli":
        run_cli(sys.argv[2:])

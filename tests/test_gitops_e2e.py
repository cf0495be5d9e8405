"""plan, apply, status and destroy end to end: the real CLI and the real local target.

The local target serves the tiny stand-in model (moondream_iac.testing.tiny_model) with
the real runtime on 127.0.0.1; its weights come from a fake hub on 127.0.0.1 holding
two revisions with different weights.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import jsonschema
import pytest

from moondream_iac.smoke import get_health
from moondream_iac.testing.fake_hub import FakeHub, publish_moondream

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((REPO_ROOT / "schema" / "plan.schema.json").read_text("utf-8"))
API_KEY = "md-e2e-key-0a9b8c7d"

# Deploys revision 2025-04-14 with the local target directly, skipping plan, apply and
# the record: what someone does by hand behind the tool's back.
DEPLOY_BEHIND_BACK = textwrap.dedent("""
    import sys
    from pathlib import Path
    from moondream_iac.config.loader import load_config
    from moondream_iac.targets.local import LocalTarget
    loaded = load_config(Path(sys.argv[1]), overrides=['model.revision="2025-04-14"'])
    target = LocalTarget(loaded)
    target.sync_weights()
    target.deploy(tag="by-hand")
""")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def hub_url(tmp_path_factory: pytest.TempPathFactory):
    with FakeHub() as hub:
        publish_moondream(hub, tmp_path_factory.mktemp("hub"), filler_bytes=1024)
        yield hub.url


class Project:
    """A folder with a deploy.yaml for the local target, and the CLI run on it."""

    def __init__(self, folder: Path, hub_url: str) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.file = folder / "deploy.yaml"
        self.file.write_text(
            "version: 1\ntarget: modal\n"
            "autoscaling: {min_containers: 0, max_containers: 2}\n"
            "auth: {mode: api_key}\n"
            f"local: {{port: {self.port}, device: cpu}}\n", encoding="utf-8")
        self.env = {**os.environ, "HF_ENDPOINT": hub_url, "MOONDREAM_API_KEY": API_KEY}

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "moondream_iac", *args, "-f", str(self.file),
                   "--target", "local"]
        if args[0] == "apply":
            # Fail within two minutes, not the default timeouts.startup of ten.
            command += ["--wait-timeout", "120"]
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                  cwd=self.folder, env=self.env, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as error:
            pytest.fail(f"{' '.join(args)} timed out after {timeout} s; stderr:\n"
                        f"{error.stderr}\nserver log:\n{self.server_log()}")

    def server_log(self) -> str:
        logs = sorted(self.folder.glob(".moondream_iac/local/*/server.log*"))
        return "\n".join(path.read_text("utf-8", errors="replace")[-3000:] for path in logs)

    def plan_json(self, *args: str) -> dict:
        result = self.run("plan", "--json", *args)
        assert result.returncode == 0, result.stderr
        document = json.loads(result.stdout)
        jsonschema.validate(document, SCHEMA)
        return document

    def health(self) -> dict | None:
        return get_health(self.url, api_key=API_KEY)


def stop_leftover_server(port: int) -> None:
    """Stop a server this test's CLI started on ``port`` that destroy could not find.

    The local target finds its server through a pid file; when that file is lost, the
    server would outlive the test. The server is found by its port setting instead.
    """
    import signal

    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            variables = environ.read_bytes().split(b"\0")
            command = (environ.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if f"MOONDREAM_IAC_PORT={port}".encode() in variables and b"moondream_iac.server" in command:
            os.kill(int(environ.parent.name), signal.SIGTERM)


@pytest.fixture
def project(tmp_path: Path, hub_url: str):
    created = Project(tmp_path, hub_url)
    yield created
    created.run("destroy", "--auto-approve")
    stop_leftover_server(created.port)


def test_plan_apply_cycle(project):
    fresh = project.run("plan", "--detailed-exitcode")
    assert fresh.returncode == 2, fresh.stderr
    assert "Create a new deployment" in fresh.stderr
    assert "  + autoscaling.min_containers: 0" in fresh.stderr
    assert project.plan_json()["action"] == "create"

    applied = project.run("apply", "--auto-approve")
    assert applied.returncode == 0, applied.stderr
    assert f"Endpoint: {project.url}" in applied.stderr
    assert project.url.endswith("/v1")
    assert project.health()["ready"] is True
    assert project.health()["revision"] == "2025-06-21"

    again = project.run("plan", "--detailed-exitcode")
    assert again.returncode == 0, again.stderr
    assert "No changes." in again.stderr
    assert project.plan_json()["has_changes"] is False

    scaled = project.run("plan", "--detailed-exitcode", "--set", "autoscaling.min_containers=1")
    assert scaled.returncode == 2, scaled.stderr
    assert ("~ autoscaling.min_containers: 0 -> 1  [autoscaler: live update, no redeploy]"
            in scaled.stderr)
    assert project.plan_json("--set", "autoscaling.min_containers=1")["action"] == \
        "update_autoscaler"

    revision = project.plan_json("--set", 'model.revision="2025-04-14"')
    assert revision["action"] == "sync_weights_and_redeploy"
    assert [(change["path"], change["class"]) for change in revision["changes"]] == \
        [("model.revision", "weights")]
    assert revision["steps"][0] == "sync_weights"

    moved = project.run("apply", "--auto-approve", "--set", 'model.revision="2025-04-14"')
    assert moved.returncode == 0, moved.stderr
    assert project.health()["revision"] == "2025-04-14"

    status = project.run("status", "--set", 'model.revision="2025-04-14"', "--json")
    assert status.returncode == 0, status.stderr
    document = json.loads(status.stdout)
    assert document["url"] == project.url
    assert document["live"]["ready"] is True
    assert document["revision"] == "2025-04-14"
    assert document["drift"]["detected"] is False
    assert document["pending_action"] == "none"


def test_change_behind_back_is_drift(project):
    applied = project.run("apply", "--auto-approve")
    assert applied.returncode == 0, applied.stderr

    by_hand = subprocess.run([sys.executable, "-c", DEPLOY_BEHIND_BACK, str(project.file)],
                             capture_output=True, text=True, timeout=300, cwd=project.folder,
                             env=project.env)
    assert by_hand.returncode == 0, by_hand.stderr
    assert project.health()["revision"] == "2025-04-14"

    drifted = project.run("plan", "--detailed-exitcode")
    assert drifted.returncode == 2, drifted.stderr
    assert "  ! revision: recorded 2025-06-21, live 2025-04-14" in drifted.stderr
    assert "the file wins" in drifted.stderr
    document = project.plan_json()
    assert document["drift"]["detected"] is True
    assert document["action"] == "redeploy"
    assert document["changes"] == []

    restored = project.run("apply", "--auto-approve")
    assert restored.returncode == 0, restored.stderr
    assert project.health()["revision"] == "2025-06-21"
    assert project.run("plan", "--detailed-exitcode").returncode == 0


def test_destroy_stops_server(project):
    assert project.run("apply", "--auto-approve").returncode == 0

    destroyed = project.run("destroy", "--auto-approve")

    assert destroyed.returncode == 0, destroyed.stderr
    assert project.health() is None
    replanned = project.run("plan", "--detailed-exitcode")
    assert replanned.returncode == 2
    assert "Create a new deployment" in replanned.stderr

"""apply through the real CLI, in subprocesses, against the stand-in target's real server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import test_apply_standin as standin

API_KEY = "md-test-key-4c1d9a7e"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Deployment:
    """A deploy.yaml in a temporary folder and a way to run the CLI on it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.file = folder / "deploy.yaml"
        self.file.write_text(
            "version: 1\ntarget: local\n"
            "auth: {mode: api_key, key_env: MD_TEST_KEY}\n"
            f"local: {{port: {self.port}}}\n", encoding="utf-8")
        self.state = folder / ".moondream_iac" / "standin"

    def cli(self, *args: str, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
        environment = {**os.environ, "MD_TEST_KEY": API_KEY, **(env or {})}
        return subprocess.run(
            [sys.executable, str(standin.SCRIPT), "cli", *args, "-f", str(self.file)],
            capture_output=True, text=True, timeout=timeout, cwd=self.folder,
            env=environment, stdin=subprocess.DEVNULL)

    def record(self) -> dict:
        return json.loads((self.state / "record.json").read_text("utf-8"))

    def deploy_count(self) -> int:
        log = self.state / "deploys.log"
        return len(log.read_text("utf-8").splitlines()) if log.exists() else 0

    def health(self) -> dict | None:
        from moondream_iac.smoke import get_health

        return get_health(f"http://127.0.0.1:{self.port}/v1", api_key=API_KEY)

    def stop(self) -> None:
        pid_file = self.state / "server.pid"
        if pid_file.exists():
            standin.stop_server(int(pid_file.read_text("utf-8")))


@pytest.fixture
def deployment(tmp_path: Path):
    created = Deployment(tmp_path)
    yield created
    created.stop()


def test_apply_without_tty_needs_auto_approve(deployment):
    result = deployment.cli("apply")

    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: apply needs confirmation, but stdin is not a terminal; pass "
                      "--auto-approve to proceed without asking"]
    assert deployment.deploy_count() == 0
    assert deployment.health() is None


def test_apply_records_and_second_apply_is_no_op(deployment):
    first = deployment.cli("apply", "--auto-approve")
    second = deployment.cli("apply", "--auto-approve")

    assert first.returncode == 0, first.stderr
    assert f"Endpoint: http://127.0.0.1:{deployment.port}/v1" in first.stderr
    record = deployment.record()
    assert record["record_version"] == 1
    assert record["url"].endswith("/v1")
    assert set(record["smoke"]["routes"]) == {"point", "detect", "query", "caption"}
    assert record["smoke"]["ok"] is True
    assert record["cold_start_seconds"] is not None
    assert record["applied_at"].endswith("Z")
    assert second.returncode == 0, second.stderr
    assert "No changes" in second.stderr
    assert deployment.deploy_count() == 1


def test_api_key_in_no_output_or_record(deployment):
    applied = deployment.cli("apply", "--auto-approve", "--json")
    planned = deployment.cli("plan", "--json", "--set", "server.queue_size=4")
    status = deployment.cli("status", "--json")

    assert applied.returncode == 0, applied.stderr
    for result in (applied, planned, status):
        assert API_KEY not in result.stdout
        assert API_KEY not in result.stderr
    assert API_KEY not in (deployment.state / "record.json").read_text("utf-8")
    assert json.loads(applied.stdout)["result"]["outcome"] == "applied"


def test_missing_api_key_fails_before_deploy(deployment):
    result = deployment.cli("apply", "--auto-approve", env={"MD_TEST_KEY": ""})

    assert result.returncode == 1
    assert "MD_TEST_KEY is not set" in result.stderr
    assert deployment.deploy_count() == 0


def test_autoscaler_change_updates_without_deploy(deployment):
    deployment.cli("apply", "--auto-approve")

    result = deployment.cli("apply", "--auto-approve", "--set", "autoscaling.min_containers=2")

    assert result.returncode == 0, result.stderr
    assert "Applied (update_autoscaler)" in result.stderr
    assert deployment.deploy_count() == 1
    written = json.loads((deployment.state / "autoscaler.json").read_text("utf-8"))
    assert written["min_containers"] == 2
    assert deployment.record()["spec"]["autoscaling"]["min_containers"] == 2
    replan = deployment.cli("plan", "--detailed-exitcode", "--set", "autoscaling.min_containers=2")
    assert replan.returncode == 0, replan.stderr
    assert "Drift" not in replan.stderr


def test_dry_run_renders_but_deploys_nothing(deployment):
    result = deployment.cli("apply", "--dry-run", "--build-dir", "out")

    assert result.returncode == 0, result.stderr
    assert "Dry run" in result.stderr
    assert (deployment.folder / "out" / "moondream" / "modal_app.py").is_file()
    assert deployment.deploy_count() == 0
    assert not (deployment.state / "record.json").exists()


def test_smoke_failure_fails_and_records(deployment):
    result = deployment.cli("apply", "--auto-approve", env={"STANDIN_BROKEN_ROUTE": "detect"})

    assert result.returncode == 1
    assert "smoke test failed" in result.stderr
    assert "detect: expected status 200, got 500" in result.stderr
    record = deployment.record()
    assert record["smoke"]["ok"] is False
    assert record["smoke"]["routes"]["detect"]["status"] == 500
    assert record["smoke"]["routes"]["point"]["ok"] is True


def test_smoke_failure_rolls_back(deployment):
    deployment.cli("apply", "--auto-approve")
    good_hash = deployment.record()["spec_hash"]

    result = deployment.cli("apply", "--auto-approve", "--rollback-on-failure",
                            "--set", "server.queue_size=4",
                            env={"STANDIN_BROKEN_ROUTE": "caption"})

    assert result.returncode == 1
    assert "rolled back to the deployment applied at" in result.stderr
    assert deployment.health()["spec_hash"] == good_hash
    assert deployment.record()["spec_hash"] == good_hash
    replan = deployment.cli("plan", "--detailed-exitcode", "--set", "server.queue_size=4")
    assert replan.returncode == 2
    assert "server.queue_size: 32 -> 4" in replan.stderr


def test_not_ready_in_time_fails(deployment):
    result = deployment.cli("apply", "--auto-approve", "--wait-timeout", "1",
                            env={"STANDIN_STARTUP_S": "30"})

    assert result.returncode == 1
    assert "did not report ready" in result.stderr
    assert "--wait-timeout" in result.stderr


def test_status_and_destroy(deployment):
    deployment.cli("apply", "--auto-approve")

    status = deployment.cli("status")
    destroyed = deployment.cli("destroy", "--auto-approve")
    status_after = deployment.cli("status")
    replanned = deployment.cli("plan", "--detailed-exitcode")

    assert status.returncode == 0, status.stderr
    assert f"URL:          http://127.0.0.1:{deployment.port}/v1" in status.stderr
    assert "Live:         ready" in status.stderr
    assert "Drift:        none" in status.stderr
    assert "Smoke test:   passed at the last apply" in status.stderr
    assert destroyed.returncode == 0, destroyed.stderr
    assert deployment.health() is None
    assert deployment.record()["state"] == "destroyed"
    assert "Destroyed at " in status_after.stderr
    assert "apply recreates the deployment" in status_after.stderr
    assert "Live:         not reachable" in status_after.stderr
    assert "None" not in status_after.stderr
    assert replanned.returncode == 2
    assert "Create a new deployment" in replanned.stderr


def test_destroy_without_tty_needs_auto_approve(deployment):
    deployment.cli("apply", "--auto-approve")

    result = deployment.cli("destroy")

    assert result.returncode == 1
    assert "destroy needs confirmation" in result.stderr
    assert deployment.health() is not None


def test_request_headers_per_auth_mode():
    from moondream_iac.smoke import missing_credentials, request_headers
    from moondream_iac.spec.schema import DeploySpec

    environ = {"MD_TEST_KEY": API_KEY, "MODAL_PROXY_TOKEN_ID": "wk-1",
               "MODAL_PROXY_TOKEN_SECRET": "ws-2"}
    keyed = DeploySpec.model_validate({"auth": {"mode": "api_key", "key_env": "MD_TEST_KEY"}})
    proxied = DeploySpec.model_validate({"auth": {"mode": "proxy"}})
    open_spec = DeploySpec.model_validate({"auth": {"mode": "none"}})

    assert request_headers(keyed, environ) == {"X-Moondream-Auth": API_KEY}
    assert request_headers(proxied, environ) == {"Modal-Key": "wk-1", "Modal-Secret": "ws-2"}
    assert request_headers(open_spec, environ) == {}
    assert missing_credentials(keyed, environ) is None
    assert "MODAL_PROXY_TOKEN_SECRET is not set" in missing_credentials(
        proxied, {"MODAL_PROXY_TOKEN_ID": "wk-1"})
    assert missing_credentials(open_spec, {}) is None


def test_health_with_wrong_key_is_unauthorized(deployment):
    from moondream_iac.smoke import get_health

    deployment.cli("apply", "--auto-approve")

    health = get_health(f"http://127.0.0.1:{deployment.port}/v1", api_key="wrong")

    assert health is not None
    assert health["status"] == "unauthorized"
    assert health["ready"] is False


def test_invalid_target_option_exits_one(deployment):
    result = deployment.cli("plan", "--detailed-exitcode", "--target", "kubernetes")

    assert result.returncode == 1
    assert "invalid --target 'kubernetes': expected modal or local" in result.stderr

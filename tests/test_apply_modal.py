"""apply and plan against the Modal target fail in one line when Modal cannot be used."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(folder: Path, *args: str) -> subprocess.CompletedProcess:
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith("MODAL_")}
    environment.update({"HOME": str(folder), "MOONDREAM_API_KEY": "k",
                        "MODAL_CONFIG_PATH": str(folder / "missing.toml")})
    return subprocess.run([sys.executable, "-m", "moondream_iac", *args], capture_output=True,
                          text=True, timeout=120, cwd=folder, env=environment,
                          stdin=subprocess.DEVNULL)


def test_modal_apply_without_token_fails(tmp_path: Path):
    (tmp_path / "deploy.yaml").write_text("version: 1\ntarget: modal\n", encoding="utf-8")

    result = run_cli(tmp_path, "apply", "--auto-approve")

    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "MODAL_TOKEN_ID" in errors[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "build").exists()


def test_modal_plan_without_token_fails(tmp_path: Path):
    (tmp_path / "deploy.yaml").write_text("version: 1\n", encoding="utf-8")

    result = run_cli(tmp_path, "plan", "--detailed-exitcode")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error:")


def test_record_rebuilt_from_previous_summary():
    from moondream_iac.spec.schema import DeploySpec
    from moondream_iac.state.record import build_record, record_from_summary

    older = DeploySpec.model_validate({"model": {"revision": "2025-04-14"}})
    newer = DeploySpec.model_validate({})
    first = build_record(older, environment="prod", target="modal", url="https://w--m.modal.run/v1",
                         weights_lock={"sha": "b" * 40, "files": {}}, smoke=None,
                         cold_start_seconds=9.0, previous=None)
    second = build_record(newer, environment="prod", target="modal",
                          url="https://w--m.modal.run/v1", weights_lock=None, smoke=None,
                          cold_start_seconds=None, previous=first)

    rebuilt = record_from_summary(second["previous"])

    assert rebuilt["spec"] == first["spec"]
    assert rebuilt["spec_hash"] == first["spec_hash"]
    assert rebuilt["deployed_spec_hash"] == first["spec_hash"]
    assert rebuilt["url"] == first["url"]
    assert rebuilt["applied_at"] == first["applied_at"]
    assert rebuilt["weights_lock"] == {"sha": "b" * 40}
    assert rebuilt["state"] == "applied"
    assert "rolled_back_at" in rebuilt

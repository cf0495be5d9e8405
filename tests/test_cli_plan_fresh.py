"""plan on a fresh machine: no API key, no record, no server, and no Modal token needed locally."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MOONDREAM_API_KEY", "MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET")}
    env["HOME"] = str(cwd)
    return subprocess.run([sys.executable, "-m", "moondream_iac", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_local_plan_needs_no_key(tmp_path):
    shutil.copy(REPO / "deploy.yaml", tmp_path / "deploy.yaml")

    result = run_cli(tmp_path, "plan", "--target", "local", "--detailed-exitcode")

    assert result.returncode == 2, result.stderr
    assert "Create a new deployment" in result.stderr
    assert "Traceback" not in result.stderr


def test_modal_plan_without_token_one_line(tmp_path):
    shutil.copy(REPO / "deploy.yaml", tmp_path / "deploy.yaml")

    result = run_cli(tmp_path, "plan")

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "modal setup" in lines[0]
    assert "MODAL_TOKEN_ID" in lines[0]


def test_local_dry_run_needs_no_key(tmp_path):
    shutil.copy(REPO / "deploy.yaml", tmp_path / "deploy.yaml")

    result = run_cli(tmp_path, "apply", "--dry-run", "--target", "local")

    assert result.returncode == 0, result.stderr
    assert "Dry run: nothing deployed" in result.stderr
    assert (tmp_path / "build" / "moondream" / "modal_app.py").is_file()


def test_local_apply_without_key_one_line(tmp_path):
    shutil.copy(REPO / "deploy.yaml", tmp_path / "deploy.yaml")

    result = run_cli(tmp_path, "apply", "--auto-approve", "--target", "local")

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: auth.mode is api_key but the environment variable MOONDREAM_API_KEY is not "
        "set, and apply's smoke test needs it; export MOONDREAM_API_KEY=<value> and rerun, "
        "or set auth.mode: none in deploy.yaml"]

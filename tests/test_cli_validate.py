"""`python -m moondream_iac validate`, `schema` and `explain` as a user runs them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from moondream_iac.config.loader import load_config
from moondream_iac.spec.jsonschema import schema_text
from moondream_iac.spec.schema import spec_hash

ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENTS_EXAMPLE = ROOT / "examples" / "deploy.environments.yaml"


def run_cli(folder: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "COLUMNS": "400", "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run([sys.executable, "-m", "moondream_iac", *arguments], cwd=folder,
                          capture_output=True, text=True, env=environment, timeout=60)


@pytest.fixture
def folder(tmp_path) -> Path:
    shutil.copy(ROOT / "deploy.yaml", tmp_path / "deploy.yaml")
    shutil.copy(ENVIRONMENTS_EXAMPLE, tmp_path / "environments.yaml")
    return tmp_path


def test_valid_file(folder):
    result = run_cli(folder, "validate")

    assert result.returncode == 0
    assert result.stderr == "deploy.yaml: valid (base)\n"
    assert result.stdout == ""


def test_valid_every_environment(folder):
    result = run_cli(folder, "validate", "-f", "environments.yaml")

    assert result.returncode == 0
    assert result.stderr.splitlines()[-1] == "environments.yaml: valid (base, dev, prod)"


def test_warning_keeps_exit_zero(folder):
    result = run_cli(folder, "validate", "--set", "timeouts.request=200")

    assert result.returncode == 0
    assert result.stderr.splitlines()[0].startswith(
        "warning: --set #1: timeouts.request: 200 s is above Modal's 150 s cutoff")


def test_json_output_hashes(folder):
    result = run_cli(folder, "validate", "-f", "environments.yaml", "--json")

    document = json.loads(result.stdout)
    expected = spec_hash(load_config(folder / "environments.yaml", environment="dev",
                                     environ={}).spec)
    assert result.returncode == 0
    assert document["valid"] is True
    assert [item["environment"] for item in document["deployments"]] == [None, "dev", "prod"]
    assert document["deployments"][1]["spec_hash"] == expected
    assert document["deployments"][2]["warnings"] == [
        "environments.yaml:63:7: autoscaling.min_containers: 1 container(s) stay up and are "
        "billed around the clock; see `plan` for the cost"]


def test_one_environment_only(folder):
    result = run_cli(folder, "validate", "-f", "environments.yaml", "--env", "dev")

    assert result.returncode == 0
    assert result.stderr == "environments.yaml: valid (dev)\n"


def test_unknown_environment(folder):
    result = run_cli(folder, "validate", "-f", "environments.yaml", "--env", "staging")

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: environments.yaml:36:1: environments: environment 'staging' not found; "
        "defined: dev, prod",
        "1 problem found"]


def test_set_problem_located(folder):
    result = run_cli(folder, "validate", "--set", "gpu.count=9")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[0] == (
        "error: --set #1: gpu.count: must be at most 8 (got 9); allowed: 1..8")


def test_unknown_option_exit_code(folder):
    result = run_cli(folder, "validate", "--no-such-option")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "--no-such-option" in result.stderr


def test_schema_written_to_file(folder):
    result = run_cli(folder, "schema", "-o", "out/deploy.schema.json")

    assert result.returncode == 0
    assert (folder / "out" / "deploy.schema.json").read_text(encoding="utf-8") == schema_text()


def test_schema_on_stdout(folder):
    result = run_cli(folder, "schema")

    assert result.returncode == 0
    assert result.stdout == schema_text()


def test_explain_text_columns(folder):
    result = run_cli(folder, "explain", "--set", "gpu.count=2")

    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert result.returncode == 0
    assert lines["gpu.count"].split()[1:] == ["2", "--set", "#1"]
    assert lines["gpu.type"].split()[1:] == ['"A10G"', "file", "(deploy.yaml:19:3)"]
    assert lines["server.image_cache_size"].split()[1:] == ["8", "default"]

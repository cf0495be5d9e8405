"""The example deploy files load, and the GitHub Actions example calls real CLI options."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from moondream_iac.config.loader import load_every_environment

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_FILES = [ROOT / "deploy.yaml", ROOT / "examples" / "deploy.environments.yaml"]
WORKFLOW = ROOT / "examples" / "github-actions" / "moondream.yml"


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda path: path.name)
def test_example_file_validates(path):
    configs = load_every_environment(path, environ={})

    assert configs
    assert all(config.spec.version == 1 for config in configs)


def test_environments_example_overlays():
    configs = {config.environment: config.spec
               for config in load_every_environment(EXAMPLE_FILES[1], environ={})}

    dev = configs["dev"]
    prod = configs["prod"]
    assert list(configs) == [None, "dev", "prod"]
    assert dev.gpu.type == "T4"
    assert dev.model.dtype == "float16"
    assert dev.autoscaling.min_containers == 0
    assert prod.gpu.type == "A10G"
    assert prod.gpu.fallbacks == ("L4", "A100-40GB")
    assert prod.app.environment == "prod"
    assert dev.app.environment != prod.app.environment


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


def workflow_triggers(workflow: dict) -> dict:
    # YAML 1.1 reads the bare key `on` as the boolean true; GitHub reads it as "on".
    return workflow.get("on", workflow.get(True))


def run_lines(job: dict) -> list[str]:
    """Return each shell command of the job, with backslash continuations joined."""
    commands = []
    for step in job["steps"]:
        script = step.get("run", "").replace("\\\n", " ")
        commands += [line.strip() for line in script.splitlines() if line.strip()]
    return commands


def cli_calls(workflow: dict) -> list[list[str]]:
    """Return the arguments after `python -m moondream_iac` in every job's commands."""
    calls = []
    for job in workflow["jobs"].values():
        for line in run_lines(job):
            if "python -m moondream_iac" in line:
                words = shlex.split(line.split("python -m moondream_iac", 1)[1])
                calls.append([word for word in words if word not in (">", "2>")])
    return calls


def test_workflow_triggers(workflow):
    triggers = workflow_triggers(workflow)

    assert "pull_request" in triggers
    assert triggers["push"]["branches"] == ["main"]


def test_workflow_plan_job(workflow):
    job = workflow["jobs"]["plan"]
    uses = [step.get("uses", "") for step in job["steps"]]
    commands = " ".join(run_lines(job))

    assert job["if"] == "github.event_name == 'pull_request'"
    assert any(action.startswith("actions/upload-artifact@") for action in uses)
    assert "validate" in commands
    assert "plan" in commands
    assert "--json" in commands
    assert "--detailed-exitcode" in commands
    assert not [line for line in run_lines(job) if "torch" in line]
    assert workflow["env"]["INSTALL_SPEC"] == ".[modal]"


def test_workflow_plan_exit_codes(workflow):
    plan_step = next(step for step in workflow["jobs"]["plan"]["steps"]
                     if step.get("id") == "plan")

    assert "set +e" in plan_step["run"]
    assert '"$code" -eq 1' in plan_step["run"]
    assert '"$code" -eq 2' in plan_step["run"]


def test_workflow_apply_job(workflow):
    job = workflow["jobs"]["apply"]
    apply_step = next(step for step in job["steps"] if "apply" in step.get("run", ""))

    assert job["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    assert "--auto-approve" in apply_step["run"]
    assert '--env "$DEPLOY_ENV"' in apply_step["run"]
    assert workflow["env"]["DEPLOY_ENV"] == "prod"
    assert apply_step["env"]["MODAL_TOKEN_ID"] == "${{ secrets.MODAL_TOKEN_ID }}"
    assert apply_step["env"]["MODAL_TOKEN_SECRET"] == "${{ secrets.MODAL_TOKEN_SECRET }}"


def test_workflow_secrets_by_reference(workflow):
    text = WORKFLOW.read_text(encoding="utf-8")
    assignments = re.findall(r"^\s*(MODAL_TOKEN_ID|MODAL_TOKEN_SECRET|MOONDREAM_API_KEY): (.*)$",
                             text, re.MULTILINE)

    assert len(assignments) == 5
    for name, value in assignments:
        assert value == f"${{{{ secrets.{name} }}}}"


def command_help(command: str) -> str:
    environment = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    result = subprocess.run([sys.executable, "-m", "moondream_iac", command, "--help"],
                            capture_output=True, text=True, env=environment, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_workflow_options_exist(workflow):
    calls = cli_calls(workflow)
    commands = {call[0] for call in calls}
    helps = {command: command_help(command) for command in commands}

    assert commands == {"validate", "plan", "apply"}
    for call in calls:
        options = [word for word in call[1:] if word.startswith("-")]
        for option in options:
            assert re.search(rf"(^|[\s,]){re.escape(option)}([\s,/]|$)", helps[call[0]],
                             re.MULTILINE), f"{call[0]} has no option {option}"

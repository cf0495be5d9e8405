"""Layer precedence: default < file < environments.<name> < --set, and each value's origin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from moondream_iac.config.explain import explain_rows
from moondream_iac.config.loader import load_config, load_every_environment
from moondream_iac.errors import ConfigError
from moondream_iac.spec.schema import DeploySpec, spec_hash

LAYERED = """\
autoscaling:
  min_containers: 1
  max_containers: 4
gpu:
  type: A10G
  fallbacks: [L4, A100-40GB]
environments:
  dev:
    autoscaling:
      min_containers: 2
    gpu:
      fallbacks: [H100]
  prod:
    app:
      environment: prod
    gpu: "H100:2"
"""


def write(folder: Path, text: str) -> Path:
    path = folder / "deploy.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def layered(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, LAYERED)
    return Path("deploy.yaml")


def field_value(spec: DeploySpec, dotted: str):
    value = spec
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


# (case id, environment, --set values, field, value, layer, location)
PRECEDENCE = [
    ("default_only", None, [], "autoscaling.scaledown_window", 300, "default", ""),
    ("file_over_default", None, [], "autoscaling.min_containers", 1, "file",
     "deploy.yaml:2:3"),
    ("environment_over_file", "dev", [], "autoscaling.min_containers", 2, "environment dev",
     "deploy.yaml:10:7"),
    ("file_kept_beside_environment", "dev", [], "autoscaling.max_containers", 4, "file",
     "deploy.yaml:3:3"),
    ("set_over_environment", "dev", ["autoscaling.min_containers=3"],
     "autoscaling.min_containers", 3, "--set", "--set #1"),
    ("set_over_file", None, ["autoscaling.max_containers=9"], "autoscaling.max_containers",
     9, "--set", "--set #1"),
    ("set_over_default", None, ["timeouts.request=60"], "timeouts.request", 60, "--set",
     "--set #1"),
    ("last_set_wins", None, ["timeouts.request=60", "timeouts.request=90"],
     "timeouts.request", 90, "--set", "--set #2"),
    ("environment_list_replaces", "dev", [], "gpu.fallbacks", ("H100",), "environment dev",
     "deploy.yaml:12:7"),
    ("set_list_replaces", "dev", ["gpu.fallbacks=[L40S]"], "gpu.fallbacks", ("L40S",),
     "--set", "--set #1"),
    ("set_empty_list", None, ["gpu.fallbacks=[]"], "gpu.fallbacks", (), "--set",
     "--set #1"),
    ("compact_section_type", "prod", [], "gpu.type", "H100", "environment prod",
     "deploy.yaml:16:5"),
    ("compact_section_resets_fallbacks", "prod", [], "gpu.fallbacks", (),
     "environment prod", "deploy.yaml:16:5"),
    ("set_field_of_compact_section", "prod", ["gpu.count=3"], "gpu.count", 3, "--set",
     "--set #1"),
    ("compact_type_kept_under_set", "prod", ["gpu.count=3"], "gpu.type", "H100",
     "environment prod", "deploy.yaml:16:5"),
    ("set_compact_section", "dev", ["gpu=L40S:4"], "gpu.fallbacks", (), "--set", "--set #1"),
    ("set_field_after_set_compact", None, ["gpu=L40S:2", "gpu.count=4"], "gpu.count", 4,
     "--set", "--set #2"),
    ("set_compact_type_kept", None, ["gpu=L40S:2", "gpu.count=4"], "gpu.type", "L40S",
     "--set", "--set #1"),
    ("set_compact_after_set_field", None, ["gpu.count=4", "gpu=L40S"], "gpu.count", 1,
     "--set", "--set #2"),
    ("environment_new_section", "prod", [], "app.environment", "prod", "environment prod",
     "deploy.yaml:15:7"),
]


@pytest.mark.parametrize(("environment", "sets", "field", "value", "layer", "location"),
                         [case[1:] for case in PRECEDENCE], ids=[case[0] for case in PRECEDENCE])
def test_layer_precedence(layered, environment, sets, field, value, layer, location):
    config = load_config(layered, environment=environment, overrides=sets, environ={})

    rows = {row.field: row for row in explain_rows(config)}

    assert field_value(config.spec, field) == value
    assert rows[field].layer == layer
    assert rows[field].location == location
    assert rows[field].value == json.dumps(list(value) if isinstance(value, tuple) else value)


def test_explain_lists_every_field(layered):
    config = load_config(layered, environ={})

    fields = [row.field for row in explain_rows(config)]

    assert "autoscaling.scaledown_window" in fields
    assert "local.port" in fields
    assert len(fields) == len(set(fields))


def test_explain_cli_json_layers(layered):
    environment = {**os.environ, "COLUMNS": "400"}
    result = subprocess.run(
        [sys.executable, "-m", "moondream_iac", "explain", "--json", "-e", "dev",
         "--set", "timeouts.request=60"],
        capture_output=True, text=True, env=environment, timeout=60,
    )

    assert result.returncode == 0, result.stderr
    rows = {row["field"]: row for row in json.loads(result.stdout)}
    assert rows["timeouts.startup"] == {"field": "timeouts.startup", "value": 600,
                                        "layer": "default", "location": ""}
    assert rows["gpu.fallbacks"]["value"] == ["H100"]
    assert rows["autoscaling.max_containers"]["location"] == "deploy.yaml:3:3"
    assert rows["autoscaling.min_containers"]["layer"] == "environment dev"
    assert rows["autoscaling.min_containers"]["location"] == "deploy.yaml:10:7"
    assert rows["timeouts.request"]["layer"] == "--set"


# (case id, file text, environment variables, field, value)
REFERENCES = [
    ("whole_value", "app:\n  name: ${APP}\n", {"APP": "vision"}, "app.name", "vision"),
    ("inside_text", "app:\n  name: md-${STAGE}\n", {"STAGE": "dev"}, "app.name", "md-dev"),
    ("two_references", "app:\n  name: ${A}-${B}\n", {"A": "x", "B": "y"}, "app.name", "x-y"),
    ("dollar_escape", "local:\n  weights_dir: /data/$$HOME/w\n", {"HOME": "/root"},
     "local.weights_dir", "/data/$HOME/w"),
    ("escape_before_reference", "local:\n  weights_dir: $${X}\n", {"X": "no"},
     "local.weights_dir", "${X}"),
    ("unquoted_number", "autoscaling:\n  min_containers: ${MIN}\n", {"MIN": "2"},
     "autoscaling.min_containers", 2),
    ("unquoted_boolean", "model:\n  revision: main\n  allow_moving_revision: ${MOVE}\n",
     {"MOVE": "true"}, "model.allow_moving_revision", True),
    ("quoted_stays_text", 'app:\n  name: "${N}"\n', {"N": "123"}, "app.name", "123"),
    ("empty_value_allowed", "app:\n  name: md${SUFFIX}\n", {"SUFFIX": ""}, "app.name", "md"),
    ("in_environment_overlay",
     "environments:\n  dev:\n    app:\n      name: ${APP}\n", {"APP": "md-dev"}, "app.name",
     "md-dev"),
]


@pytest.mark.parametrize(("text", "variables", "field", "value"),
                         [case[1:] for case in REFERENCES], ids=[case[0] for case in REFERENCES])
def test_variable_reference(tmp_path, monkeypatch, text, variables, field, value):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, text)
    environment = "dev" if "environments:" in text else None

    spec = load_config(Path("deploy.yaml"), environment=environment, environ=variables).spec

    assert field_value(spec, field) == value


# (case id, file text, environment, variables, expected problem lines)
BROKEN_REFERENCES = [
    ("missing_variable", "app:\n  name: ${APP_NAME}\n", None, {},
     ["deploy.yaml:2:3: app.name: environment variable APP_NAME is not set (used as "
      "${APP_NAME}); export it before running, or write the value"]),
    ("missing_in_environment", "environments:\n  prod:\n    app:\n      name: ${PROD_APP}\n",
     "prod", {},
     ["deploy.yaml:4:7: app.name: environment variable PROD_APP is not set (used as "
      "${PROD_APP}); export it before running, or write the value"]),
    ("invalid_name", "app:\n  name: ${1X}\n", None, {"1X": "a"},
     ["deploy.yaml:2:3: app.name: invalid variable reference ${1X}; names are letters, "
      "digits and '_'"]),
    ("quoted_number_is_text", 'autoscaling:\n  min_containers: "${MIN}"\n', None,
     {"MIN": "2"},
     ["deploy.yaml:2:3: autoscaling.min_containers: expected a whole number (got '2'); "
      "write it without quotes"]),
    ("octal_stays_text", "autoscaling:\n  min_containers: ${MIN}\n", None, {"MIN": "010"},
     ["deploy.yaml:2:3: autoscaling.min_containers: expected a whole number (got '010'); "
      "write it without quotes"]),
    ("value_checked_after_substitution", "app:\n  label: ${LABEL}\n", None,
     {"LABEL": "Bad Label"},
     ["deploy.yaml:2:3: app.label: invalid value (got '${LABEL}'); use lowercase letters, "
      "digits and '-', starting and ending with a letter or digit, at most 63 characters"]),
]


@pytest.mark.parametrize(("text", "environment", "variables", "expected"),
                         [case[1:] for case in BROKEN_REFERENCES],
                         ids=[case[0] for case in BROKEN_REFERENCES])
def test_variable_reference_error(tmp_path, monkeypatch, text, environment, variables,
                                  expected):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, text)

    with pytest.raises(ConfigError) as raised:
        load_config(Path("deploy.yaml"), environment=environment, environ=variables)

    assert [problem.format() for problem in raised.value.problems] == expected


def test_unknown_environment_lists_defined(layered):
    with pytest.raises(ConfigError) as raised:
        load_config(layered, environment="staging", environ={})

    assert [p.format() for p in raised.value.problems] == [
        "deploy.yaml:7:1: environments: environment 'staging' not found; defined: dev, prod"]


def test_unknown_environment_none_defined(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "gpu: A10G\n")

    with pytest.raises(ConfigError) as raised:
        load_config(Path("deploy.yaml"), environment="prod", environ={})

    assert [p.format() for p in raised.value.problems] == [
        "deploy.yaml: environments: environment 'prod' not found; the file defines none "
        "under environments:"]


def test_environments_not_a_mapping(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "environments: [dev, prod]\n")

    with pytest.raises(ConfigError) as raised:
        load_config(Path("deploy.yaml"), environment="dev", environ={})

    assert [p.format() for p in raised.value.problems] == [
        "deploy.yaml:1:1: environments: must be a mapping of environment name to settings"]


def test_empty_environment_is_base(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "gpu: L4\nenvironments:\n  dev:\n")

    base = load_config(Path("deploy.yaml"), environ={})
    dev = load_config(Path("deploy.yaml"), environment="dev", environ={})

    assert spec_hash(dev.spec) == spec_hash(base.spec)


def test_same_modal_app_rejected(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "app:\n  name: md\nenvironments:\n  dev:\n    gpu: L4\n"
                    "  prod:\n    gpu: H100\n")

    with pytest.raises(ConfigError) as raised:
        load_every_environment(Path("deploy.yaml"), environ={})

    assert [p.format() for p in raised.value.problems] == [
        "deploy.yaml:6:3: environments.prod: environments 'dev' and 'prod' deploy the same "
        "Modal app (environment default, app md, label moondream); give each its own "
        "app.environment or app.name and app.label"]


def test_collision_reported_with_other_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "environments:\n  a:\n    gpu: L4\n  b:\n    gpu: H100\n"
                    "  c:\n    autoscaling: {min_containers: 9, max_containers: 1}\n")

    with pytest.raises(ConfigError) as raised:
        load_every_environment(Path("deploy.yaml"), environ={})

    messages = [p.format() for p in raised.value.problems]
    assert len(messages) == 2
    assert messages[0].startswith("deploy.yaml:7:19: autoscaling.min_containers:")
    assert messages[1].startswith("deploy.yaml:4:3: environments.b: environments 'a' and 'b'")


def test_distinct_modal_apps_accepted(layered):
    configs = load_every_environment(layered, environ={})

    assert [config.environment for config in configs] == [None, "dev", "prod"]
    assert configs[2].spec.app.environment == "prod"


def test_same_app_in_other_modal_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "environments:\n  dev:\n    app: {environment: dev}\n"
                    "  prod:\n    app: {environment: prod}\n")

    configs = load_every_environment(Path("deploy.yaml"), environ={})

    assert len(configs) == 3


def test_local_environments_never_collide(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "target: local\nenvironments:\n  a: {}\n  b: {}\n")

    configs = load_every_environment(Path("deploy.yaml"), environ={})

    assert len(configs) == 3


# (case id, file text that must hash like an empty file's defaults)
SAME_HASH = [
    ("explicit_scaledown_default", "autoscaling:\n  scaledown_window: 300\n"),
    ("explicit_gpu_default", "gpu:\n  type: A10G\n  count: 1\n  fallbacks: []\n"),
    ("compact_gpu_default", "gpu: a10g\n"),
    ("explicit_nulls", "autoscaling:\n  max_containers: null\napp:\n  environment: null\n"),
    ("mount_path_spelling", "volume:\n  mount_path: /weights/\n"),
    ("version_only", "version: 1\n"),
]


@pytest.mark.parametrize("text", [case[1] for case in SAME_HASH],
                         ids=[case[0] for case in SAME_HASH])
def test_explicit_default_same_hash(tmp_path, monkeypatch, text):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, text)

    spec = load_config(Path("deploy.yaml"), environ={}).spec

    assert spec_hash(spec) == spec_hash(DeploySpec())


def test_changed_value_changes_hash(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "autoscaling:\n  scaledown_window: 301\n")

    spec = load_config(Path("deploy.yaml"), environ={}).spec

    assert spec_hash(spec) != spec_hash(DeploySpec())


def test_key_order_same_hash(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = tmp_path / "a.yaml"
    second = tmp_path / "b.yaml"
    first.write_text("gpu: {type: L4, count: 2}\ntimeouts: {request: 60}\n", encoding="utf-8")
    second.write_text("timeouts: {request: 60}\ngpu: {count: 2, type: l4}\n", encoding="utf-8")

    assert spec_hash(load_config(first, environ={}).spec) == spec_hash(
        load_config(second, environ={}).spec)


def test_set_and_file_same_hash(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "gpu: L4\n")
    written = load_config(Path("deploy.yaml"), environ={}).spec

    write(tmp_path, "version: 1\n")
    overridden = load_config(Path("deploy.yaml"), overrides=["gpu.type=l4"], environ={}).spec

    assert spec_hash(overridden) == spec_hash(written)


def test_variable_value_hidden_in_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "app:\n  name: ${TOKEN}\n  label: x${TOKEN}\n")
    token = 'as-Secret\n"value'

    with pytest.raises(ConfigError) as raised:
        load_config(Path("deploy.yaml"), environ={"TOKEN": token})

    lines = [problem.format() for problem in raised.value.problems]
    assert lines[0].startswith("deploy.yaml:2:3: app.name: invalid value (got '${TOKEN}')")
    assert lines[1].startswith("deploy.yaml:3:3: app.label: invalid value (got 'x${TOKEN}')")
    assert all("Secret" not in line for line in lines)


def test_variable_value_hidden_in_warnings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "timeouts:\n  request: ${REQUEST_TIMEOUT}\n")

    config = load_config(Path("deploy.yaml"), environ={"REQUEST_TIMEOUT": "86400"})

    assert config.spec.timeouts.request == 86400
    assert [warning.format() for warning in config.warnings] == [
        "deploy.yaml:2:3: timeouts.request: 86400 s is above Modal's 150 s cutoff for web "
        "requests, so longer requests fail with a 303 that no Moondream client follows; use "
        "at most 140"]


def test_set_date_revision_stays_text(layered):
    # A shell strips the quotes of --set model.revision="2025-04-14", so a date is text.
    loaded = load_config(layered, overrides=["model.revision=2025-04-14"])

    assert loaded.spec.model.revision == "2025-04-14"

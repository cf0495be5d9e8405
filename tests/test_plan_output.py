"""Plan output: the JSON matches schema/plan.schema.json, the text diff reads well, no secrets."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from moondream_iac.plan.cost import cost_preview
from moondream_iac.plan.model import build_plan
from moondream_iac.plan.text import plan_lines
from moondream_iac.spec.gpus import load_catalog
from moondream_iac.spec.schema import DeploySpec, spec_hash
from moondream_iac.state.record import REDACTED, build_record, redact

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schema" / "plan.schema.json"
API_KEY = "md-live-9f8e7d6c5b4a"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text("utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def spec_of(**sections) -> DeploySpec:
    return DeploySpec.model_validate({"target": "modal", **sections})


def record_of(spec: DeploySpec) -> dict:
    return build_record(spec, environment="prod", target="modal", url="https://w--m.modal.run/v1",
                        weights_lock=None, smoke=None, cold_start_seconds=12.5, previous=None)


def document_for(desired: DeploySpec, applied: DeploySpec | None, health: dict | None) -> dict:
    costs = [cost_preview(desired, load_catalog(), environment="prod")]
    plan = build_plan(desired, file="deploy.yaml", environment="prod",
                      record=record_of(applied) if applied else None, health=health, costs=costs)
    return plan.to_dict(secret_values=(API_KEY,))


def live(spec: DeploySpec, **changes) -> dict:
    return {"ready": True, "spec_hash": spec_hash(spec), "revision": spec.model.revision,
            "model_repo": spec.model.repo, **changes}


CASES = {
    "create": (spec_of(), None, None),
    "none": (spec_of(), spec_of(), live(spec_of())),
    "autoscaler": (spec_of(autoscaling={"min_containers": 1}), spec_of(), live(spec_of())),
    "weights": (spec_of(model={"revision": "2025-04-14"}), spec_of(), live(spec_of())),
    "drift": (spec_of(), spec_of(), live(spec_of(), revision="2025-04-14")),
    "stopped": (spec_of(), spec_of(), None),
    "unknown_price": (spec_of(gpu={"type": "H200", "fallbacks": ["H100"]}), spec_of(),
                      live(spec_of())),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_plan_json_matches_schema(case, validator):
    document = document_for(*CASES[case])

    errors = sorted(validator.iter_errors(document), key=lambda error: list(error.path))
    assert errors == [], [f"{list(error.path)}: {error.message}" for error in errors]


def test_schema_rejects_wrong_shape(validator):
    document = document_for(*CASES["autoscaler"])
    document["changes"][0]["class"] = "sometimes"

    assert not validator.is_valid(document)


def test_text_line_for_autoscaler_change():
    lines = plan_lines(document_for(*CASES["autoscaler"]))

    expected = "  ~ autoscaling.min_containers: 0 -> 1  [autoscaler: live update, no redeploy]"
    assert expected in lines
    assert any(line.startswith("Action: update_autoscaler") for line in lines)


def test_text_for_no_changes():
    lines = plan_lines(document_for(*CASES["none"]))

    assert "No changes. The deployment matches the file." in lines


def test_text_for_drift_names_both_sides():
    lines = plan_lines(document_for(*CASES["drift"]))

    assert "  ! revision: recorded 2025-06-21, live 2025-04-14" in lines
    assert any("the file wins" in line for line in lines)


def test_text_shows_unknown_price():
    text = "\n".join(plan_lines(document_for(*CASES["unknown_price"])))

    assert "H200 x1 unknown/h" in text
    assert "fallback H100 x1: $3.95/h" in text


def test_secret_value_never_in_output():
    spec = spec_of()
    health = live(spec, revision=f"tampered-{API_KEY}")
    plan = build_plan(spec, file="deploy.yaml", environment=None, record=record_of(spec),
                      health=health, warnings=[f"the key {API_KEY} leaked into a warning"])

    document = plan.to_dict(secret_values=(API_KEY,))
    document_text = json.dumps(document)

    assert document["drift"]["detected"]
    assert API_KEY not in document_text
    assert REDACTED in document_text
    assert API_KEY not in "\n".join(plan_lines(document))


def test_redact_blanks_credential_keys():
    data = {"details": {"api_key": "abc", "hf_token": "def", "password": "ghi",
                        "Authorization": "Bearer x", "pid": 12}}

    redacted = redact(data)["details"]

    assert redacted["api_key"] == REDACTED
    assert redacted["hf_token"] == REDACTED
    assert redacted["password"] == REDACTED
    assert redacted["Authorization"] == REDACTED
    assert redacted["pid"] == 12


def test_redact_keeps_secret_names():
    spec = spec_of(model={"hub_token_secret": "hf-token"}, secrets=["extra"])

    record = record_of(spec)

    assert record["spec"]["auth"]["secret"] == "moondream-api-key"
    assert record["spec"]["auth"]["key_env"] == "MOONDREAM_API_KEY"
    assert record["spec"]["model"]["hub_token_secret"] == "hf-token"
    assert record["spec"]["secrets"] == ["extra"]

"""Plan: changes classed by how they are applied, defaults normalised, drift found."""

from __future__ import annotations

from pathlib import Path

import pytest

from moondream_iac.config.loader import load_config
from moondream_iac.plan.classes import ChangeClass, classify
from moondream_iac.plan.model import build_plan
from moondream_iac.spec.schema import DeploySpec, spec_hash
from moondream_iac.state.record import build_record, mark_destroyed


def spec_of(**sections) -> DeploySpec:
    return DeploySpec.model_validate({"target": "modal", **sections})


def record_of(spec: DeploySpec) -> dict:
    return build_record(spec, environment=None, target=spec.target, url="https://x/v1",
                        weights_lock={"sha": "a" * 40}, smoke=None, cold_start_seconds=None,
                        previous=None)


def health_of(spec: DeploySpec, **changes) -> dict:
    health = {"status": "ready", "ready": True, "spec_hash": spec_hash(spec),
              "model_repo": spec.model.repo, "revision": spec.model.revision}
    return {**health, **changes}


def plan_for(desired: DeploySpec, applied: DeploySpec | None, health: dict | None = None,
             **options):
    record = record_of(applied) if applied else None
    if health is None and applied is not None:
        health = health_of(applied)
    return build_plan(desired, file="deploy.yaml", environment=None, record=record,
                      health=health, **options)


@pytest.mark.parametrize(("path", "target", "expected"), [
    ("autoscaling.min_containers", "modal", ChangeClass.AUTOSCALER),
    ("autoscaling.max_containers", "modal", ChangeClass.AUTOSCALER),
    ("autoscaling.buffer_containers", "modal", ChangeClass.AUTOSCALER),
    ("autoscaling.scaledown_window", "modal", ChangeClass.AUTOSCALER),
    ("gpu.type", "modal", ChangeClass.REDEPLOY),
    ("gpu.fallbacks", "modal", ChangeClass.REDEPLOY),
    ("concurrency.max_inputs", "modal", ChangeClass.REDEPLOY),
    ("timeouts.request", "modal", ChangeClass.REDEPLOY),
    ("auth.mode", "modal", ChangeClass.REDEPLOY),
    ("server.queue_size", "modal", ChangeClass.REDEPLOY),
    ("secrets", "modal", ChangeClass.REDEPLOY),
    ("placement.region", "modal", ChangeClass.REDEPLOY),
    ("model.dtype", "modal", ChangeClass.REDEPLOY),
    ("model.repo", "modal", ChangeClass.WEIGHTS),
    ("model.revision", "modal", ChangeClass.WEIGHTS),
    ("model.allow_moving_revision", "modal", ChangeClass.RECORD),
    ("app.name", "modal", ChangeClass.RECREATE),
    ("app.label", "modal", ChangeClass.RECREATE),
    ("app.environment", "modal", ChangeClass.RECREATE),
    ("volume.name", "modal", ChangeClass.RECREATE),
    ("volume.mount_path", "modal", ChangeClass.RECREATE),
    ("target", "modal", ChangeClass.RECREATE),
    ("local.port", "modal", ChangeClass.RECORD),
    ("local.port", "local", ChangeClass.REDEPLOY),
])
def test_classify_table(path, target, expected):
    assert classify(path, target) is expected


def test_fresh_deployment_plans_create():
    plan = plan_for(spec_of(), None)

    assert plan.action == "create"
    assert plan.has_changes
    assert {change.action for change in plan.changes} == {"create"}
    assert "sync_weights" in plan.steps
    assert "deploy" in plan.steps


def test_destroyed_record_plans_create():
    spec = spec_of()
    record = mark_destroyed(record_of(spec))

    plan = build_plan(spec, file="deploy.yaml", environment=None, record=record, health=None)

    assert plan.action == "create"


def test_same_spec_plans_nothing():
    plan = plan_for(spec_of(), spec_of())

    assert plan.action == "none"
    assert not plan.has_changes
    assert plan.changes == []
    assert plan.steps == []


def test_explicit_defaults_are_no_change(tmp_path: Path):
    minimal = tmp_path / "minimal.yaml"
    minimal.write_text("version: 1\n", encoding="utf-8")
    explicit = tmp_path / "explicit.yaml"
    explicit.write_text(
        "version: 1\ntarget: modal\n"
        "gpu: {type: a10g, count: 1, fallbacks: []}\n"
        "autoscaling: {min_containers: 0, max_containers: null, buffer_containers: 0, "
        "scaledown_window: 300}\n"
        "volume: {mount_path: /weights/}\n"
        "model: {repo: vikhyatk/moondream2, revision: '2025-06-21', dtype: bfloat16}\n"
        "auth: {mode: api_key, secret: moondream-api-key}\n"
        "secrets: []\n", encoding="utf-8")
    applied = load_config(minimal).spec
    desired = load_config(explicit).spec

    plan = plan_for(desired, applied)

    assert plan.changes == []
    assert plan.action == "none"


def test_min_containers_plans_autoscaler_update():
    plan = plan_for(spec_of(autoscaling={"min_containers": 1}), spec_of())

    assert plan.action == "update_autoscaler"
    assert [change.path for change in plan.changes] == ["autoscaling.min_containers"]
    change = plan.changes[0]
    assert (change.before, change.after) == (0, 1)
    assert change.change_class is ChangeClass.AUTOSCALER
    assert "deploy" not in plan.steps


def test_revision_plans_weights_sync_and_redeploy():
    plan = plan_for(spec_of(model={"revision": "2025-04-14"}), spec_of())

    assert plan.action == "sync_weights_and_redeploy"
    assert plan.steps[:3] == ["sync_weights", "render", "deploy"]
    assert plan.changes[0].change_class is ChangeClass.WEIGHTS


def test_costliest_class_decides_action():
    desired = spec_of(autoscaling={"min_containers": 1}, gpu="H100", app={"label": "other"})

    plan = plan_for(desired, spec_of())

    classes = {change.path: change.change_class for change in plan.changes}
    assert classes["autoscaling.min_containers"] is ChangeClass.AUTOSCALER
    assert classes["gpu.type"] is ChangeClass.REDEPLOY
    assert classes["app.label"] is ChangeClass.RECREATE
    assert plan.action == "recreate"
    assert any("keeps running" in warning for warning in plan.warnings)


def test_list_order_is_a_change():
    applied = spec_of(gpu={"type": "A10G", "fallbacks": ["L4", "A100-40GB"]})
    desired = spec_of(gpu={"type": "A10G", "fallbacks": ["A100-40GB", "L4"]})

    plan = plan_for(desired, applied)

    assert [change.path for change in plan.changes] == ["gpu.fallbacks"]
    assert plan.changes[0].before == ["L4", "A100-40GB"]


def test_field_missing_from_old_record_is_create():
    spec = spec_of()
    record = record_of(spec)
    del record["spec"]["server"]["image_cache_size"]

    plan = build_plan(spec, file="deploy.yaml", environment=None, record=record,
                      health=health_of(spec))

    change = plan.changes[0]
    assert change.path == "server.image_cache_size"
    assert change.action == "create"
    assert change.change_class is ChangeClass.REDEPLOY


def test_live_revision_change_is_drift():
    spec = spec_of()
    live = health_of(spec, revision="2025-04-14", spec_hash="0123456789abcdef")

    plan = plan_for(spec, spec, live)

    fields = {item.field: item for item in plan.drift}
    assert set(fields) == {"revision", "spec_hash"}
    assert fields["revision"].recorded == "2025-06-21"
    assert fields["revision"].live == "2025-04-14"
    assert plan.changes == []
    assert plan.action == "redeploy"


def test_stopped_endpoint_is_drift():
    spec = spec_of()
    record = record_of(spec)

    plan = build_plan(spec, file="deploy.yaml", environment=None, record=record, health=None)

    assert [item.field for item in plan.drift] == ["endpoint"]
    assert plan.action == "redeploy"


def test_unreported_health_fields_are_not_drift():
    spec = spec_of()

    plan = plan_for(spec, spec, {"status": "ready", "ready": True})

    assert plan.drift == []
    assert plan.action == "none"


def test_no_refresh_reports_no_drift():
    spec = spec_of()
    record = record_of(spec)

    plan = build_plan(spec, file="deploy.yaml", environment=None, record=record, health=None,
                      refreshed=False)

    assert plan.drift == []
    assert plan.action == "none"
    assert plan.to_dict()["live"] is None


def test_drift_escalates_autoscaler_change():
    spec = spec_of()
    live = health_of(spec, spec_hash="0123456789abcdef")

    plan = plan_for(spec_of(autoscaling={"min_containers": 2}), spec, live)

    assert plan.action == "redeploy"


def test_local_target_has_no_render_step():
    desired = DeploySpec.model_validate({"target": "local", "gpu": "H100"})
    applied = DeploySpec.model_validate({"target": "local"})

    plan = plan_for(desired, applied)

    assert plan.action == "redeploy"
    assert plan.steps == ["deploy", "wait_ready", "smoke_test", "write_record"]


def test_autoscaler_only_apply_is_not_drift():
    deployed = spec_of()
    current = spec_of(autoscaling={"min_containers": 3})
    record = build_record(current, environment=None, target="modal", url="https://x/v1",
                          weights_lock=None, smoke=None, cold_start_seconds=None,
                          previous=record_of(deployed), deployed_spec_hash=spec_hash(deployed))

    plan = build_plan(current, file="deploy.yaml", environment=None, record=record,
                      health=health_of(deployed))

    assert record["spec_hash"] != record["deployed_spec_hash"]
    assert plan.drift == []
    assert plan.action == "none"


def test_failed_last_apply_plans_redeploy():
    spec = spec_of()
    record = build_record(spec, environment=None, target="modal", url="https://x/v1",
                          weights_lock=None, smoke={"ok": False, "routes": {}},
                          cold_start_seconds=None, previous=None,
                          details={"failure": "the smoke test failed"})

    plan = build_plan(spec, file="deploy.yaml", environment=None, record=record,
                      health=health_of(spec))

    assert plan.changes == []
    assert plan.action == "redeploy"
    assert any("the last apply failed" in warning for warning in plan.warnings)

"""Build a plan: the desired spec against the applied record and the live endpoint."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from moondream_iac import __version__
from moondream_iac.plan.classes import ChangeClass
from moondream_iac.plan.diff import FieldChange, diff_specs
from moondream_iac.plan.drift import RESOLUTION, DriftItem, find_drift
from moondream_iac.spec.schema import DeploySpec, normalised, spec_hash
from moondream_iac.state.record import deployed_hash, is_live, redact

FORMAT_VERSION = 1

# Apply action for the costliest change class in a plan.
ACTIONS = {
    ChangeClass.RECORD: "record",
    ChangeClass.AUTOSCALER: "update_autoscaler",
    ChangeClass.REDEPLOY: "redeploy",
    ChangeClass.WEIGHTS: "sync_weights_and_redeploy",
    ChangeClass.RECREATE: "recreate",
}
STEPS = {
    "none": [],
    "record": ["write_record"],
    "update_autoscaler": ["update_autoscaler", "write_record"],
    "redeploy": ["render", "deploy", "wait_ready", "smoke_test", "write_record"],
    "sync_weights_and_redeploy": [
        "sync_weights", "render", "deploy", "wait_ready", "smoke_test", "write_record"],
    "recreate": ["sync_weights", "render", "deploy", "wait_ready", "smoke_test", "write_record"],
    "create": ["sync_weights", "render", "deploy", "wait_ready", "smoke_test", "write_record"],
}


@dataclass(frozen=True)
class Plan:
    """The changes, drift and cost of a deployment, and the action apply would take."""

    spec: DeploySpec
    file: str
    environment: str | None
    action: str
    changes: list[FieldChange]
    drift: list[DriftItem]
    record: Mapping[str, Any] | None
    health: Mapping[str, Any] | None
    costs: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    refreshed: bool = True

    @property
    def has_changes(self) -> bool:
        return self.action != "none"

    @property
    def steps(self) -> list[str]:
        steps = list(STEPS[self.action])
        if self.spec.target != "modal":
            # Only the Modal target deploys a rendered app file; others run the runtime.
            steps = [step for step in steps if step != "render"]
        return steps

    @property
    def needs_weights(self) -> bool:
        return "sync_weights" in STEPS[self.action]

    @property
    def needs_deploy(self) -> bool:
        return "deploy" in STEPS[self.action]

    def to_dict(self, *, secret_values: tuple[str, ...] = ()) -> dict[str, Any]:
        """Return the JSON document described by schema/plan.schema.json, redacted."""
        document = {
            "format_version": FORMAT_VERSION,
            "tool_version": __version__,
            "file": self.file,
            "environment": self.environment,
            "target": self.spec.target,
            "deployment": deployment_identity(self.spec),
            "desired_spec_hash": spec_hash(self.spec),
            "applied": _applied_summary(self.record),
            "live": _live_summary(self.health) if self.refreshed else None,
            "has_changes": self.has_changes,
            "action": self.action,
            "steps": self.steps,
            "changes": [change.to_dict() for change in self.changes],
            "drift": {
                "detected": bool(self.drift),
                "items": [item.to_dict() for item in self.drift],
                "resolution": RESOLUTION if self.drift else None,
            },
            "cost": self.costs,
            "warnings": list(self.warnings),
        }
        return redact(document, values=secret_values)


def build_plan(
    spec: DeploySpec,
    *,
    file: str,
    environment: str | None,
    record: Mapping[str, Any] | None,
    health: Mapping[str, Any] | None,
    costs: list[dict[str, Any]] | None = None,
    warnings: list[str] | None = None,
    refreshed: bool = True,
) -> Plan:
    """Compare ``spec`` with the applied ``record`` and the live ``health``; return the plan.

    A destroyed or missing record plans a create. Drift with nothing else to do plans a
    redeploy, because the file wins over changes made behind the tool's back. With
    ``refreshed`` false the live endpoint was not read, so no drift is reported.
    """
    applied = record if is_live(record) else None
    desired = normalised(spec)

    if applied is None:
        changes = diff_specs(desired, None, target=spec.target)
        action = "create"
        drift: list[DriftItem] = []
    else:
        changes = diff_specs(desired, applied.get("spec") or {}, target=spec.target)
        drift = find_drift(applied, health) if refreshed else []
        action = _action_for(changes, drift)

    notes = list(warnings or [])
    failure = ((applied or {}).get("details") or {}).get("failure")
    if failure and action == "none":
        # The failed deployment is live and recorded; deploying it again is the retry.
        action = "redeploy"
        notes.append(f"the last apply failed ({failure}); apply deploys again")
    if action == "recreate":
        notes.append(
            "a recreate deploys a new app; the old one keeps running (and billing) until "
            "you stop it, e.g. with `destroy` on the old settings or `modal app stop`"
        )
    return Plan(spec, file, environment, action, changes, drift, applied, health,
                costs or [], notes, refreshed)


def deployment_identity(spec: DeploySpec) -> dict[str, Any]:
    """Return the fields that name a deployment: the lock and the record are keyed by them."""
    return {
        "app": spec.app.name,
        "label": spec.app.label,
        "modal_environment": spec.app.environment,
        "volume": spec.volume.name,
    }


def _action_for(changes: list[FieldChange], drift: list[DriftItem]) -> str:
    if not changes and not drift:
        return "none"
    costliest = max((change.change_class for change in changes), default=ChangeClass.RECORD)
    if drift:
        costliest = max(costliest, ChangeClass.REDEPLOY)
    return ACTIONS[costliest]


def _applied_summary(record: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not record:
        return None
    return {
        "spec_hash": record.get("spec_hash"),
        "deployed_spec_hash": deployed_hash(record),
        "applied_at": record.get("applied_at"),
        "url": record.get("url"),
        "tool_version": record.get("tool_version"),
    }


def _live_summary(health: Mapping[str, Any] | None) -> dict[str, Any]:
    if health is None:
        return {"reachable": False, "ready": False, "spec_hash": None, "revision": None,
                "model_repo": None}
    return {
        "reachable": True,
        "ready": bool(health.get("ready")),
        "spec_hash": health.get("spec_hash") or None,
        "revision": health.get("revision") or None,
        "model_repo": health.get("model_repo") or None,
    }

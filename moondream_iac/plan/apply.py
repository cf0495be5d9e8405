"""apply: lock, plan, confirm, then sync weights, deploy or update, wait, smoke test, record.

The steps run in this order under the deployment lock:

1. read the applied record and the live health, and build the plan;
2. stop when there is nothing to do, or after rendering on ``dry_run``;
3. ask for confirmation;
4. sync the weights, deploy (or update the autoscaler, or only write the record);
5. wait for ``/v1/health`` to report ready with the new spec hash;
6. run the smoke test; on failure, roll back when asked, and fail;
7. write the new applied record.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moondream_iac.plan.errors import MissingApiKeyError, NotReadyError, SmokeTestError
from moondream_iac.plan.model import Plan, build_plan
from moondream_iac.smoke import UNAUTHORIZED
from moondream_iac.spec.schema import DeploySpec, spec_hash
from moondream_iac.state.record import build_record, deployed_hash, summarise
from moondream_iac.targets.base import Target

# Seconds between two /v1/health polls while waiting for readiness.
POLL_INTERVAL_S = 0.5
# Seconds each smoke request may take; a first request may still warm caches.
SMOKE_TIMEOUT_S = 120.0


@dataclass
class ApplyOptions:
    """Options of one apply run; ``confirm`` prompts the user and returns the reply."""

    confirm: Callable[[Plan], bool]
    show_plan: Callable[[Plan], None]
    log: Callable[[str], None]
    dry_run: bool = False
    rollback_on_failure: bool = False
    smoke: bool = True
    wait_timeout_s: float | None = None
    build_dir: Path = Path("build")
    costs: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ApplyResult:
    """The result of apply; ``outcome`` is no_changes, dry_run, cancelled or applied."""

    outcome: str
    plan: Plan
    url: str | None = None
    record: dict[str, Any] | None = None
    rendered: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "url": self.url,
            "rendered": str(self.rendered) if self.rendered else None,
            "smoke": (self.record or {}).get("smoke"),
            "cold_start_seconds": (self.record or {}).get("cold_start_seconds"),
        }


def credential_values(spec: DeploySpec) -> tuple[str, ...]:
    """Return the secret values this process sends to the endpoint, for redaction."""
    from moondream_iac.smoke import request_headers

    return tuple(value for value in request_headers(spec).values() if value)


def read_plan(target: Target, spec: DeploySpec, *, file: str, environment: str | None,
              costs: list[dict[str, Any]], refresh: bool = True) -> Plan:
    """Read the record and (when ``refresh``) the live health, and build the plan."""
    record = target.read_record()
    health = target.live_health() if refresh else None
    return build_plan(spec, file=file, environment=environment, record=record,
                      health=health, costs=costs, refreshed=refresh)


def run_apply(target: Target, spec: DeploySpec, *, file: str, environment: str | None,
              options: ApplyOptions) -> ApplyResult:
    """Apply ``spec`` to ``target``; raise an IacError when a step fails."""
    from moondream_iac.smoke import missing_credentials, request_headers

    problem = missing_credentials(spec)
    if problem and not options.dry_run:
        raise MissingApiKeyError(problem)
    headers = request_headers(spec)

    target.preflight(deploying=not options.dry_run)
    with target.lock("apply"):
        plan = read_plan(target, spec, file=file, environment=environment,
                         costs=options.costs)
        options.show_plan(plan)
        if not plan.has_changes:
            return ApplyResult("no_changes", plan, url=(plan.record or {}).get("url"))
        if options.dry_run:
            return ApplyResult("dry_run", plan, rendered=_render(spec, options.build_dir))
        if not options.confirm(plan):
            return ApplyResult("cancelled", plan)
        return _execute(target, spec, plan, environment, headers, options)


def _render(spec: DeploySpec, build_dir: Path) -> Path:
    from moondream_iac.render.renderer import render_to_dir

    return render_to_dir(spec, build_dir)


def _execute(target: Target, spec: DeploySpec, plan: Plan, environment: str | None,
             headers: Mapping[str, str], options: ApplyOptions) -> ApplyResult:
    previous = plan.record
    fields: dict[str, Any] = {
        "deployed_spec_hash": deployed_hash(previous) if previous else None,
        "url": (previous or {}).get("url") or "",
        "weights_lock": (previous or {}).get("weights_lock"),
        "smoke": (previous or {}).get("smoke"),
        "cold_start_seconds": (previous or {}).get("cold_start_seconds"),
        "details": dict((previous or {}).get("details") or {}),
    }

    if plan.needs_weights:
        options.log("syncing weights")
        fields["weights_lock"] = target.sync_weights() or fields["weights_lock"]

    if plan.needs_deploy:
        _deploy_and_check(target, spec, plan, environment, headers, options, fields)
    elif plan.action == "update_autoscaler":
        options.log("updating the autoscaler in place")
        target.update_autoscaler()

    record = build_record(spec, environment=environment, target=target.name,
                          previous=previous, **fields)
    target.write_record(record)
    return ApplyResult("applied", plan, url=fields["url"], record=record)


def _deploy_and_check(target: Target, spec: DeploySpec, plan: Plan, environment: str | None,
                      headers: Mapping[str, str], options: ApplyOptions,
                      fields: dict[str, Any]) -> None:
    """Deploy, wait for readiness and smoke test, filling ``fields`` of the new record.

    On a readiness or smoke failure the failed deployment is recorded first, then rolled
    back when ``rollback_on_failure`` is set, so the target's rollback always returns to
    the deployment before the stored one.
    """
    options.log(f"deploying to {target.name}")
    started = time.monotonic()
    outcome = target.deploy(tag=deploy_tag(spec))
    deploy_seconds = round(time.monotonic() - started, 3)

    details = dict(outcome.details)
    fields["deployed_spec_hash"] = spec_hash(spec)
    fields["url"] = outcome.url
    fields["weights_lock"] = details.pop("weights_lock", None) or fields["weights_lock"]
    fields["details"] = details
    fields["smoke"] = None
    fields["cold_start_seconds"] = None
    try:
        health, ready_wait = _wait_ready(target, spec, options)
        fields["cold_start_seconds"] = _cold_start(health, ready_wait)
        details["timings"] = {"deploy_seconds": deploy_seconds, "ready_wait_seconds": ready_wait,
                              "model_load_seconds": health.get("load_seconds")}
        fields["smoke"] = _smoke(outcome.url, headers, options)
    except (NotReadyError, SmokeTestError) as error:
        fields["smoke"] = getattr(error, "result", None)
        details["failure"] = str(error)
        target.write_record(build_record(spec, environment=environment, target=target.name,
                                         previous=plan.record, **fields))
        _roll_back_or_explain(target, plan, error, options)
        raise


def deploy_tag(spec: DeploySpec) -> str:
    """Return the deployment tag: ``iac-`` and the spec hash (Modal allows 50 characters)."""
    return f"iac-{spec_hash(spec)}"


def _wait_ready(target: Target, spec: DeploySpec,
                options: ApplyOptions) -> tuple[Mapping[str, Any], float]:
    """Poll live health until it reports ready with this spec's hash.

    Returns the ready health document and the seconds waited.
    """
    timeout_s = options.wait_timeout_s or float(spec.timeouts.startup)
    expected = spec_hash(spec)
    started = time.monotonic()
    last: Mapping[str, Any] | None = None
    options.log(f"waiting up to {timeout_s:g} s for the endpoint to report ready")

    while time.monotonic() - started < timeout_s:
        last = target.live_health()
        if last is not None and last.get("status") == UNAUTHORIZED:
            raise NotReadyError(
                f"the endpoint rejected this tool's credentials for auth.mode "
                f"{spec.auth.mode}; check that they match the deployed secret"
            )
        if last is not None and last.get("error") and not last.get("ready"):
            raise NotReadyError(f"the deployment failed to start: {last['error']}")
        if last is not None and last.get("ready") and last.get("spec_hash") in (expected, "", None):
            return last, round(time.monotonic() - started, 3)
        time.sleep(POLL_INTERVAL_S)

    seen = "no answer" if last is None else (
        f"status {last.get('status')!r}, spec_hash {last.get('spec_hash')!r}")
    raise NotReadyError(
        f"the deployment did not report ready with spec hash {expected} within "
        f"{timeout_s:g} s (last /v1/health: {seen}); raise timeouts.startup or pass "
        "--wait-timeout, and check the target's logs"
    )


def _cold_start(health: Mapping[str, Any], ready_wait: float) -> float:
    """Return the seconds from server start to ready: the server's uptime when first ready.

    On Modal, deploy returns before any container runs, and the first health request
    starts one, so its uptime when first ready is the cold start. Servers that report
    no uptime fall back to the seconds waited.
    """
    uptime = health.get("uptime_seconds")
    if isinstance(uptime, (int, float)):
        return round(float(uptime), 3)
    return ready_wait


def _smoke(url: str, headers: Mapping[str, str],
           options: ApplyOptions) -> dict[str, Any] | None:
    from moondream_iac.smoke import run_smoke_test

    if not options.smoke:
        return None
    options.log(f"smoke testing {url}")
    result = run_smoke_test(url, headers=headers, timeout_s=SMOKE_TIMEOUT_S)
    if not result["ok"]:
        failed = [f"{route}: {outcome['error']}" for route, outcome in result["routes"].items()
                  if not outcome["ok"]]
        error = SmokeTestError(f"the smoke test failed on {url} ({'; '.join(failed)})")
        error.result = result  # type: ignore[attr-defined]
        raise error
    return result


def _roll_back_or_explain(target: Target, plan: Plan, error: Exception,
                          options: ApplyOptions) -> None:
    """Roll back when requested and possible, and state in the error what is left running."""
    previous = plan.record
    if options.rollback_on_failure and previous:
        options.log("rolling back to the previous deployment")
        target.rollback()
        error.args = (f"{error.args[0]}; rolled back to the deployment applied at "
                      f"{summarise(previous)['applied_at']}",)
        return
    if not previous:
        hint = "there is no previous deployment to roll back to"
    else:
        hint = "rerun with --rollback-on-failure to return to the previous deployment"
    error.args = (f"{error.args[0]}; the failed deployment stays live and is recorded; {hint}",)

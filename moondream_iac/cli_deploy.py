"""plan, apply, status and destroy: the commands that compare and change a deployment.

This module has no ``from __future__ import annotations``: typer reads the option
annotations of the commands defined inside ``register``, which name option types
imported there, at definition time.
"""

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

TARGETS = ("modal", "local")

TargetOption = Annotated[
    str | None,
    typer.Option("--target", help="Deploy to this target instead of the file's `target:` "
                 "(modal or local); the same as --set target=NAME.", metavar="modal|local"),
]
PricesOption = Annotated[
    Path | None,
    typer.Option("--prices", help="YAML file of GPU prices in US dollars per GPU-hour, "
                 "shaped like moondream_iac/data/gpus.yaml, overriding the shipped prices.",
                 dir_okay=False, exists=True),
]
AutoApproveOption = Annotated[
    bool, typer.Option("--auto-approve", help="Do not ask for confirmation; needed when "
                       "stdin is not a terminal, as in CI.")
]
BuildDirOption = Annotated[
    Path, typer.Option("--build-dir", help="Folder for the rendered app file.")
]


def register(app: typer.Typer, reports_errors: Any) -> None:
    """Add plan, apply, status and destroy to the CLI ``app``."""
    from moondream_iac.cli import EnvOption, FileOption, JsonOption, SetOption

    @app.command()
    @reports_errors
    def plan(
        file: FileOption = Path("deploy.yaml"),
        env: EnvOption = None,
        set_: SetOption = None,
        target: TargetOption = None,
        as_json: JsonOption = False,
        detailed_exitcode: Annotated[bool, typer.Option(
            "--detailed-exitcode", help="Exit 0 when there is nothing to do, 2 when "
            "there are changes, 1 on error.")] = False,
        prices: PricesOption = None,
        refresh: Annotated[bool, typer.Option(
            "--refresh/--no-refresh", help="Read the live /v1/health to find drift. On "
            "Modal, an app scaled to zero starts a container to answer.")] = True,
    ) -> None:
        """Show what apply would change: fields, how each is applied, drift and cost."""
        from moondream_iac.plan.apply import read_plan

        loaded, deploy_target = _load(file, env, set_, target)
        deploy_target.preflight(deploying=False)
        result = read_plan(deploy_target, loaded.spec, file=str(file),
                           environment=loaded.environment,
                           costs=_costs(loaded, file, set_, target, prices), refresh=refresh)
        _print_plan(result, as_json)
        if detailed_exitcode and result.has_changes:
            raise typer.Exit(2)

    @app.command()
    @reports_errors
    def apply(
        file: FileOption = Path("deploy.yaml"),
        env: EnvOption = None,
        set_: SetOption = None,
        target: TargetOption = None,
        as_json: JsonOption = False,
        auto_approve: AutoApproveOption = False,
        dry_run: Annotated[bool, typer.Option(
            "--dry-run", help="Plan and render the app file, but deploy nothing.")] = False,
        rollback_on_failure: Annotated[bool, typer.Option(
            "--rollback-on-failure", help="When the new deployment does not turn ready or "
            "fails the smoke test, return to the previous one.")] = False,
        skip_smoke: Annotated[bool, typer.Option(
            "--skip-smoke", help="Do not send the smoke test requests after a deploy.")]
        = False,
        wait_timeout: Annotated[float | None, typer.Option(
            "--wait-timeout", help="Seconds to wait for the endpoint to report ready, at "
            "least 1. Default: timeouts.startup.", min=1, metavar="SECONDS")] = None,
        prices: PricesOption = None,
        build_dir: BuildDirOption = Path("build"),
        foreground: Annotated[bool, typer.Option(
            "--foreground", help="Local target only: sync the weights, then serve in this "
            "terminal until Ctrl-C instead of in the background. Writes no applied record.")]
        = False,
    ) -> None:
        """Deploy the file: sync weights, deploy or update in place, smoke test, record."""
        from moondream_iac.plan.apply import ApplyOptions, run_apply

        loaded, deploy_target = _load(file, env, set_, target, build_dir=build_dir)
        if foreground:
            _serve_foreground(deploy_target, loaded)
            return
        secrets = _secret_values(loaded.spec)
        options = ApplyOptions(
            confirm=lambda plan: _confirm("Apply these changes?", auto_approve, "apply"),
            show_plan=lambda plan: None if as_json else _print_plan(plan, False, secrets),
            log=_log,
            dry_run=dry_run,
            rollback_on_failure=rollback_on_failure,
            smoke=not skip_smoke,
            wait_timeout_s=wait_timeout,
            build_dir=build_dir,
            costs=_costs(loaded, file, set_, target, prices),
        )
        result = run_apply(deploy_target, loaded.spec, file=str(file),
                           environment=loaded.environment, options=options)
        _report_apply(result, as_json, secrets)

    @app.command()
    @reports_errors
    def status(
        file: FileOption = Path("deploy.yaml"),
        env: EnvOption = None,
        set_: SetOption = None,
        target: TargetOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Show the deployment: URL, readiness, revision, spec hash and drift."""
        from moondream_iac.plan.apply import read_plan

        loaded, deploy_target = _load(file, env, set_, target)
        deploy_target.preflight(deploying=False)
        result = read_plan(deploy_target, loaded.spec, file=str(file),
                           environment=loaded.environment, costs=[])
        # The plan drops a destroyed record (it plans a create), but status reports it.
        stored = deploy_target.read_record() or {}
        destroyed_at = stored.get("destroyed_at") if stored.get("state") == "destroyed" else None
        document = _status_document(result, _secret_values(loaded.spec), destroyed_at)
        if as_json:
            typer.echo(json.dumps(document, indent=2))
            return
        for line in _status_lines(document):
            _log(line)

    @app.command()
    @reports_errors
    def destroy(
        file: FileOption = Path("deploy.yaml"),
        env: EnvOption = None,
        set_: SetOption = None,
        target: TargetOption = None,
        auto_approve: AutoApproveOption = False,
    ) -> None:
        """Stop the deployment. The weights volume and the record are kept."""
        from moondream_iac.state.record import is_live, mark_destroyed

        loaded, deploy_target = _load(file, env, set_, target)
        deploy_target.preflight(deploying=False)
        with deploy_target.lock("destroy"):
            record = deploy_target.read_record()
            if not is_live(record) and deploy_target.live_health() is None:
                _log("Nothing to destroy: no applied deployment and no live endpoint.")
                return
            name = f"{loaded.spec.app.name} on {deploy_target.name}"
            if not _confirm(f"Stop {name}?", auto_approve, "destroy"):
                _log("Cancelled.")
                return
            deploy_target.destroy()
            if record:
                deploy_target.write_record(mark_destroyed(record))
        _log(f"Stopped {name}.")


def _serve_foreground(deploy_target: Any, loaded: Any) -> None:
    """Sync the weights of a local deployment, then serve it in this process until Ctrl-C."""
    from moondream_iac.errors import TargetError

    if deploy_target.name != "local":
        raise TargetError(
            f"--foreground serves in this terminal, which only the local target can do "
            f"(target is {deploy_target.name}); add --target local or drop --foreground")
    deploy_target.preflight()
    with deploy_target.lock("apply --foreground"):
        deploy_target.sync_weights()
    local = loaded.spec.local
    _log(f"Serving http://{local.host}:{local.port}/v1 in the foreground; press Ctrl-C to stop.")
    deploy_target.serve_foreground()


def _load(file: Path, env: str | None, set_: list[str] | None, target: str | None,
          *, build_dir: Path = Path("build")) -> tuple[Any, Any]:
    from moondream_iac.config.loader import load_config
    from moondream_iac.targets import get_target

    loaded = load_config(file, environment=env, overrides=_overrides(set_, target))
    for warning in loaded.warnings:
        _log(f"[yellow]warning:[/yellow] {_escape(warning.format())}", markup=True)
    return loaded, get_target(loaded, build_dir=build_dir)


def _overrides(set_: list[str] | None, target: str | None) -> list[str]:
    from moondream_iac.errors import IacError

    overrides = list(set_ or [])
    if target is None:
        return overrides
    if target not in TARGETS:
        # An IacError exits with 1; a usage error would exit with 2, which plan
        # --detailed-exitcode uses for "changes".
        raise IacError(f"invalid --target {target!r}: expected {' or '.join(TARGETS)}")
    overrides.append(f"target={target}")
    return overrides


def _costs(loaded: Any, file: Path, set_: list[str] | None, target: str | None,
           prices: Path | None) -> list[dict[str, Any]]:
    """Return the cost of the planned deployment, then of each other environment in the file."""
    from moondream_iac.config.loader import load_every_environment
    from moondream_iac.errors import ConfigError
    from moondream_iac.plan.cost import cost_preview
    from moondream_iac.spec.gpus import load_catalog

    catalog = load_catalog(prices)
    costs = [cost_preview(loaded.spec, catalog, environment=loaded.environment)]
    try:
        others = load_every_environment(file, overrides=_overrides(set_, target))
    except ConfigError:
        # validate reports problems in other environments; the plan covers this one.
        return costs
    for other in others:
        if other.environment != loaded.environment:
            costs.append(cost_preview(other.spec, catalog, environment=other.environment))
    return costs


def _secret_values(spec: Any) -> tuple[str, ...]:
    from moondream_iac.plan.apply import credential_values

    return credential_values(spec)


def _print_plan(plan: Any, as_json: bool, secrets: tuple[str, ...] = ()) -> None:
    from moondream_iac.plan.text import plan_lines

    document = plan.to_dict(secret_values=secrets or _secret_values(plan.spec))
    if as_json:
        typer.echo(json.dumps(document, indent=2))
        return
    for line in plan_lines(document):
        _log(_colour(line), markup=True)


def _colour(line: str) -> str:
    colours = {"  +": "green", "  ~": "yellow", "  -": "red", "  !": "magenta"}
    escaped = _escape(line)
    for prefix, colour in colours.items():
        if line.startswith(prefix):
            return f"[{colour}]{escaped}[/{colour}]"
    return escaped


def _report_apply(result: Any, as_json: bool, secrets: tuple[str, ...]) -> None:
    from moondream_iac.state.record import redact

    if as_json:
        document = {"plan": result.plan.to_dict(secret_values=secrets),
                    "result": result.to_dict()}
        typer.echo(json.dumps(redact(document, values=secrets), indent=2))
    messages = {
        "no_changes": "No changes to apply.",
        "dry_run": f"Dry run: nothing deployed; the app file is at {result.rendered}.",
        "cancelled": "Cancelled; nothing changed.",
    }
    if result.outcome in messages:
        _log(_escape(messages[result.outcome]))
    if result.outcome == "applied":
        _log(_escape(_applied_summary(result)))
    if result.url and result.outcome in ("applied", "no_changes"):
        _log(f"Endpoint: {_escape(result.url)}")


def _applied_summary(result: Any) -> str:
    record = result.record or {}
    parts = [f"Applied ({result.plan.action})."]
    if record.get("cold_start_seconds") is not None:
        parts.append(f"Ready after {record['cold_start_seconds']:.1f} s.")
    smoke = record.get("smoke")
    if smoke and result.plan.needs_deploy:
        latencies = ", ".join(f"{route} {outcome['latency_ms']:.0f} ms"
                              for route, outcome in smoke["routes"].items())
        parts.append(f"Smoke test passed: {latencies}.")
    return " ".join(parts)


def _status_document(plan: Any, secrets: tuple[str, ...],
                     destroyed_at: str | None = None) -> dict[str, Any]:
    from moondream_iac.state.record import redact

    document = plan.to_dict(secret_values=secrets)
    record = plan.record or {}
    return redact({
        "format_version": document["format_version"],
        "target": document["target"],
        "deployment": document["deployment"],
        "url": record.get("url"),
        "applied": document["applied"],
        "live": document["live"],
        "file_spec_hash": document["desired_spec_hash"],
        "revision": ((record.get("spec") or {}).get("model") or {}).get("revision"),
        "drift": document["drift"],
        "pending_action": document["action"],
        "smoke": record.get("smoke"),
        "cold_start_seconds": record.get("cold_start_seconds"),
        "destroyed_at": destroyed_at,
    }, values=secrets)


def _status_lines(document: dict[str, Any]) -> list[str]:
    applied = document["applied"]
    live = document["live"] or {}
    if document.get("destroyed_at"):
        lines = [f"Destroyed at {document['destroyed_at']}; the record and the weights are "
                 "kept, and apply recreates the deployment."]
    elif applied is None:
        lines = ["Not deployed: no applied record for this deployment."]
    else:
        lines = [f"URL:          {document['url']}",
                 f"Applied at:   {applied['applied_at']} (spec hash {applied['spec_hash']})"]
    ready = "ready" if live.get("ready") else ("not ready" if live.get("reachable")
                                               else "not reachable")
    if live.get("reachable"):
        lines.append(f"Live:         {ready}; spec hash {_shown(live.get('spec_hash'))}, "
                     f"revision {_shown(live.get('revision'))}")
    else:
        lines.append(f"Live:         {ready}")
    lines.append(f"Revision:     {_shown(document['revision'])} (recorded)")
    lines.append(f"File:         spec hash {document['file_spec_hash']}; pending action "
                 f"{document['pending_action']}")
    smoke = document["smoke"]
    if smoke:
        failed = [route for route, outcome in smoke["routes"].items() if not outcome["ok"]]
        verdict = "passed" if smoke["ok"] else f"failed on {', '.join(failed)}"
        lines.append(f"Smoke test:   {verdict} at the last apply; cold start "
                     f"{document['cold_start_seconds']} s")
    drift = document["drift"]
    if drift["detected"]:
        items = "; ".join(f"{item['field']}: recorded {item['recorded']}, live {item['live']}"
                          for item in drift["items"])
        lines.append(f"Drift:        {items} ({drift['resolution']})")
    else:
        lines.append("Drift:        none")
    return [_escape(line) for line in lines]


def _shown(value: Any) -> str:
    """Format a value for the status text: '-' where nothing is known."""
    return "-" if value is None else str(value)


def _confirm(question: str, auto_approve: bool, command: str) -> bool:
    from moondream_iac.plan.errors import ApprovalRequiredError

    if auto_approve:
        return True
    if not sys.stdin.isatty():
        raise ApprovalRequiredError(
            f"{command} needs confirmation, but stdin is not a terminal; pass "
            "--auto-approve to proceed without asking"
        )
    return typer.confirm(question, default=False, err=True)


def _log(message: str, *, markup: bool = True) -> None:
    from moondream_iac.cli import stderr

    stderr.print(message, markup=markup)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)

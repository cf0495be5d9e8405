"""The command line: ``python -m moondream_iac COMMAND``.

Human output goes to stderr and machine output (``--json``, ``schema``) to stdout, so
pipelines can redirect one without the other. validate, render, explain and plan never
import torch, transformers or modal.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from moondream_iac import __version__
from moondream_iac.errors import ConfigError, IacError

EXIT_CODES_HELP = """\
Exit codes: 0 success (for plan --detailed-exitcode: no changes); 1 error (invalid
config, failed deploy, lock held); 2 plan --detailed-exitcode found changes;
130 interrupted.
"""

app = typer.Typer(
    name="moondream_iac",
    help="Deploy a self-hosted Moondream endpoint on Modal from a declarative deploy.yaml.\n\n"
    + EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

stderr = Console(stderr=True, highlight=False, soft_wrap=True)

FileOption = Annotated[
    Path,
    typer.Option("--file", "-f", help="The deploy file, relative to the current folder.",
                 metavar="PATH"),
]
EnvOption = Annotated[
    str | None,
    typer.Option("--env", "-e", help="Environment overlay from the file's `environments:` "
                 "section, applied on top of the base settings. Default: none.",
                 metavar="NAME"),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override one field, FIELD.PATH=VALUE (a YAML value), applied "
                 "after the environment overlay. Repeatable.", metavar="FIELD.PATH=VALUE"),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print a JSON document on stdout instead of text.")
]

Command = TypeVar("Command", bound=Callable[..., Any])

try:
    # typer 0.2x vendors click under typer._click; older releases use click itself.
    from typer._click.exceptions import ClickException
except ImportError:
    from click.exceptions import ClickException

# Set to any value to see the traceback of an unexpected error instead of one line.
DEBUG_VARIABLE = "MOONDREAM_IAC_DEBUG"


def reports_errors(command: Command) -> Command:
    """Turn IacError into its message and exit code, and Ctrl-C into exit 130."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ConfigError as error:
            print_problems(error)
            raise typer.Exit(error.exit_code) from None
        except IacError as error:
            stderr.print(f"[red]error:[/red] {escape(str(error))}")
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            stderr.print("interrupted")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, ClickException):
            raise
        except OSError as error:
            where = f" {error.filename}" if error.filename else ""
            stderr.print(f"[red]error:[/red] cannot use{escape(where)}: "
                         f"{escape(error.strerror or str(error))}")
            raise typer.Exit(1) from None
        except Exception as error:  # noqa: BLE001 - the last guard against a traceback
            if os.environ.get(DEBUG_VARIABLE):
                raise
            stderr.print(f"[red]internal error:[/red] {escape(type(error).__name__)}: "
                         f"{escape(str(error))}; rerun with {DEBUG_VARIABLE}=1 for the "
                         "traceback and report it")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def print_problems(error: ConfigError) -> None:
    """Print each problem on its own line, then a count."""
    for problem in error.problems:
        stderr.print(f"[red]error:[/red] {escape(problem.format())}")
    count = len(error.problems)
    stderr.print(f"{count} problem{'s' if count != 1 else ''} found")


def print_warnings(warnings: list[Any]) -> None:
    """Print each warning once: the base and its environments share most fields."""
    for text in dict.fromkeys(warning.format() for warning in warnings):
        stderr.print(f"[yellow]warning:[/yellow] {escape(text)}")


@app.command()
@reports_errors
def validate(
    file: FileOption = Path("deploy.yaml"),
    env: EnvOption = None,
    set_: SetOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check the deploy file: syntax, schema, limits and cross-field rules.

    Without --env, the base settings and every environment in the file are checked, and
    two environments that would deploy the same Modal app are an error.
    """
    from moondream_iac.config.loader import load_config, load_every_environment
    from moondream_iac.spec.schema import spec_hash

    try:
        if env is None:
            configs = load_every_environment(file, overrides=set_ or ())
        else:
            configs = [load_config(file, environment=env, overrides=set_ or ())]
    except ConfigError as error:
        if as_json:
            typer.echo(json.dumps({"valid": False, "file": str(file),
                                   "problems": [p.format() for p in error.problems]}, indent=2))
        raise

    print_warnings([warning for config in configs for warning in config.warnings])
    if as_json:
        document = {
            "valid": True,
            "file": str(file),
            "deployments": [
                {"environment": c.environment, "spec_hash": spec_hash(c.spec),
                 "warnings": [w.format() for w in c.warnings]}
                for c in configs
            ],
        }
        typer.echo(json.dumps(document, indent=2))
    names = ", ".join(c.environment or "base" for c in configs)
    stderr.print(f"{file}: valid ({names})")


@app.command()
@reports_errors
def schema(
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write the JSON Schema to this file instead of stdout.")] = None,
) -> None:
    """Print the JSON Schema of deploy.yaml, for editors and CI."""
    from moondream_iac.spec.jsonschema import schema_text

    text = schema_text()
    if output is None:
        typer.echo(text, nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    stderr.print(f"wrote {output}")


@app.command()
@reports_errors
def explain(
    file: FileOption = Path("deploy.yaml"),
    env: EnvOption = None,
    set_: SetOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print every effective field with the layer and FILE:LINE that set it.

    Layers, lowest first: default, file, environment NAME, --set.
    """
    from moondream_iac.config.explain import explain_rows
    from moondream_iac.config.loader import load_config

    config = load_config(file, environment=env, overrides=set_ or ())
    rows = explain_rows(config)
    if as_json:
        document = [{**row._asdict(), "value": json.loads(row.value)} for row in rows]
        typer.echo(json.dumps(document, indent=2))
        return
    width = max(len(row.field) for row in rows)
    for row in rows:
        # A --set row's location ("--set #2") already names its layer.
        source = row.layer
        if row.location:
            source = row.location if row.location.startswith(row.layer) else f"{row.layer} ({row.location})"
        typer.echo(f"{row.field.ljust(width)}  {row.value:<24}  {source}")


@app.command()
@reports_errors
def render(
    file: FileOption = Path("deploy.yaml"),
    env: EnvOption = None,
    set_: SetOption = None,
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Build folder; the app file goes to OUT/<app name>/modal_app.py.")]
    = Path("build"),
) -> None:
    """Write the Modal app file for the deployment, without deploying it."""
    from moondream_iac.config.loader import load_config
    from moondream_iac.render.renderer import render_to_dir

    config = load_config(file, environment=env, overrides=set_ or ())
    print_warnings(config.warnings)
    path = render_to_dir(config.spec, out)
    stderr.print(f"wrote {path}")


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"moondream_iac {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[bool, typer.Option(
        "--version", callback=version_callback, is_eager=True,
        help="Print the version and exit.")] = False,
) -> None:
    """Deploy a self-hosted Moondream endpoint on Modal from a declarative deploy.yaml."""


def _register_deploy_commands() -> None:
    """Add plan, apply, status and destroy, which live in their own module."""
    from moondream_iac import cli_deploy

    cli_deploy.register(app, reports_errors)


_register_deploy_commands()


def main() -> None:
    """Run the CLI (the console script and ``python -m moondream_iac``).

    Usage errors exit with 1, not click's 2, because 2 means "changes found" for
    plan --detailed-exitcode and a pipeline must not read a typo as a pending change.
    """
    try:
        code = app(prog_name="moondream_iac", standalone_mode=False)
    except ClickException as error:
        error.show()
        code = 1
    except typer.Abort:
        stderr.print("aborted")
        code = 1
    sys.exit(code or 0)


if __name__ == "__main__":
    main()

"""Render a DeploySpec into the Python file of its Modal app.

The same spec and tool version always give the same bytes: the file has no timestamp,
and its header records the spec hash and the tool version instead. Secret values never
reach it, because the spec holds only secret names.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import moondream_iac
from moondream_iac.render.context import build_context
from moondream_iac.render.literals import python_literal
from moondream_iac.spec.schema import DeploySpec
from moondream_iac.weights.layout import write_atomic

APP_TEMPLATE = "modal_app.py.j2"
APP_FILE = "modal_app.py"
# A PEP 440 version; the header prints it outside a string literal.
_TOOL_VERSION = re.compile(r"[0-9A-Za-z.+!_-]{1,64}")


def render_app(spec: DeploySpec, *, tool_version: str = moondream_iac.__version__) -> str:
    """Return the source of the Modal app file for ``spec``."""
    if not _TOOL_VERSION.fullmatch(tool_version):
        raise ValueError(f"invalid tool_version {tool_version!r}: expected a version such as 0.1.0")
    template = _environment().get_template(APP_TEMPLATE)
    return template.render(build_context(spec, tool_version))


def render_to_dir(spec: DeploySpec, build_dir: Path) -> Path:
    """Write the app file to ``<build_dir>/<app.name>/modal_app.py`` atomically; return its path."""
    path = Path(build_dir) / spec.app.name / APP_FILE
    write_atomic(path, render_app(spec))
    return path


def templates_root() -> Traversable:
    """Return the templates folder: inside the installed package, else the checkout's.

    A wheel ships the repository's ``templates/`` as ``moondream_iac/templates``; a source
    checkout has it at the repository root, beside the package.
    """
    packaged = resources.files("moondream_iac") / "templates"
    if packaged.is_dir():
        return packaged
    checkout = Path(moondream_iac.__file__).resolve().parent.parent / "templates"
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(
        f"no templates folder in the moondream_iac package nor at {checkout}; "
        "reinstall moondream-iac"
    )


@functools.cache
def _environment():
    import jinja2

    root = templates_root()

    def load(name: str) -> str:
        return root.joinpath(name).read_text("utf-8")

    environment = jinja2.Environment(
        loader=jinja2.FunctionLoader(load),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    environment.filters["py"] = python_literal
    return environment

"""Layers of configuration: the base file, an environment overlay, then --set values.

Precedence, lowest to highest: schema defaults, the base file, ``environments.<name>``
from the same file, then each ``--set field.path=value`` in the order given. Mappings
merge key by key; any other value (a list included) replaces the lower layer's value.
Every leaf remembers the layer and location that set it, for error messages and
``explain``.
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


from moondream_iac.config.yamlfile import (
    FieldPath,
    Location,
    YamlDocument,
    format_path,
    parse_yaml_value,
    short_repr,
)
from moondream_iac.errors import ConfigError, Problem
from moondream_iac.spec.schema import ENVIRONMENT_NAME

ENVIRONMENTS_KEY = "environments"
_REFERENCE = re.compile(r"\$\{([^}]*)\}|\$\$")
_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENVIRONMENT_NAME = re.compile(ENVIRONMENT_NAME)
_INTEGER = re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$")
_SET_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class Origin:
    """The layer that set a value, and where."""

    layer: str
    location: Location | None

    def format(self) -> str:
        if self.location is None:
            return self.layer
        return f"{self.layer} ({self.location.format()})"


@dataclass
class Layer:
    """One layer's data with the location of each of its values."""

    name: str
    data: dict[str, Any]
    locations: dict[FieldPath, Location]
    # Problems found while reading the layer that leave its data usable, such as an
    # octal-looking --set value; the loader reports them with the schema's findings.
    problems: list[Problem] = field(default_factory=list)


def base_layer(document: YamlDocument) -> Layer:
    """Return the file's own settings, without the environments section."""
    data = {key: value for key, value in document.data.items() if key != ENVIRONMENTS_KEY}
    return Layer("file", data, document.locations)


def environment_names(document: YamlDocument) -> list[str]:
    """Return the environments the file defines, in file order; raise ConfigError if invalid."""
    environments = _environments(document)
    problems = [
        _problem(f"invalid environment name {short_repr(name)}; use letters, digits, '.', "
                 "'_' and '-', starting with a letter or digit, at most 64 characters",
                 ENVIRONMENTS_KEY, document.locate((ENVIRONMENTS_KEY, name)))
        for name in environments if not _ENVIRONMENT_NAME.match(name)
    ]
    if problems:
        raise ConfigError(problems)
    return list(environments)


def _environments(document: YamlDocument) -> dict[str, Any]:
    environments = document.data.get(ENVIRONMENTS_KEY)
    if environments is None:
        return {}
    if not isinstance(environments, dict):
        raise ConfigError([_problem(
            "must be a mapping of environment name to settings", ENVIRONMENTS_KEY,
            document.locations.get((ENVIRONMENTS_KEY,)))])
    return environments


def environment_layer(document: YamlDocument, name: str) -> Layer:
    """Return the overlay of environment ``name``; raise ConfigError if it is not defined."""
    environments = _environments(document)
    known = environment_names(document)
    if name not in known:
        where = document.locations.get((ENVIRONMENTS_KEY,))
        hint = (f"defined: {', '.join(known)}" if known
                else "the file defines none under environments:")
        raise ConfigError([Problem(
            f"environment {short_repr(name)} not found; {hint}", path=ENVIRONMENTS_KEY,
            file=document.file, line=where.line if where else None,
            column=where.column if where else None,
        )])

    overlay = environments[name]
    prefix = (ENVIRONMENTS_KEY, name)
    if overlay is None:
        overlay = {}
    if not isinstance(overlay, dict):
        raise ConfigError([_problem("must be a mapping of settings",
                                    format_path(prefix), document.locate(prefix))])
    locations = {
        path[len(prefix):]: location for path, location in document.locations.items()
        if path[: len(prefix)] == prefix
    }
    return Layer(f"environment {name}", overlay, locations)


def set_layers(assignments: Sequence[str]) -> list[Layer]:
    """Parse ``--set field.path=value`` assignments, one layer each, in order.

    Values are YAML scalars or lists. One layer per assignment lets ``--set gpu=H100:2
    --set gpu.count=4`` merge the way a file and its overlay do.
    """
    layers: list[Layer] = []
    problems: list[Problem] = []
    for index, assignment in enumerate(assignments, start=1):
        where = Location("--set", index, 1, assignment, False)
        dotted, separator, raw = assignment.partition("=")
        dotted = dotted.strip()
        if not separator or not _SET_PATH.match(dotted):
            problems.append(_problem(
                f"invalid --set {assignment!r}; write FIELD.PATH=VALUE, e.g. "
                "autoscaling.min_containers=1", "", where))
            continue

        path = tuple(dotted.split("."))
        location = Location("--set", index, 1, raw, not raw.lstrip().startswith(("'", '"')))
        value, found = parse_yaml_value(raw, path, location)
        if isinstance(value, datetime.date):
            # No field contains a date, and a shell strips the quotes that would keep
            # --set model.revision=2025-06-21 as text, so the text as written is meant.
            value = raw.strip()
        layers.append(Layer("--set", _nested(path, value), {path: location}, found))
    if problems:
        raise ConfigError(problems)
    return layers


def _nested(path: FieldPath, value: Any) -> dict[str, Any]:
    """Return ``{"a": {"b": value}}`` for the path ``("a", "b")``."""
    data: Any = value
    for part in reversed(path):
        data = {part: data}
    return data


def merge_layers(layers: Sequence[Layer]) -> tuple[dict[str, Any], dict[FieldPath, Origin]]:
    """Merge layers lowest first; return the data and the origin of every value in it."""
    merged: dict[str, Any] = {}
    origins: dict[FieldPath, Origin] = {}
    for layer in layers:
        _merge_into(merged, layer.data, (), layer, origins)
    return merged, origins


def _merge_into(target: dict[str, Any], source: Mapping[str, Any], prefix: FieldPath,
                layer: Layer, origins: dict[FieldPath, Origin]) -> None:
    for key, value in source.items():
        path = (*prefix, key)
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            origins.setdefault(path, Origin(layer.name, layer.locations.get(path)))
            _merge_into(target[key], value, path, layer, origins)
            continue
        for stale in [known for known in origins if known[: len(path)] == path]:
            del origins[stale]
        target[key] = _copy(value)
        _record_origins(value, path, layer, origins)


def _record_origins(value: Any, path: FieldPath, layer: Layer,
                    origins: dict[FieldPath, Origin]) -> None:
    origins[path] = Origin(layer.name, layer.locations.get(path))
    if isinstance(value, dict):
        for key, child in value.items():
            _record_origins(child, (*path, key), layer, origins)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            _record_origins(child, (*path, index), layer, origins)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _copy(child) for key, child in value.items()}
    if isinstance(value, list):
        return [_copy(child) for child in value]
    return value


def resolve_references(data: Any, origins: Mapping[FieldPath, Origin],
                       environ: Mapping[str, str] | None = None,
                       used: dict[str, str] | None = None) -> Any:
    """Replace ``${VAR}`` in every string with the variable's value; ``$$`` is a literal '$'.

    Raise ConfigError naming each missing variable and where it was used. Only config
    values are read this way: secrets stay names and their values are never read here.
    Each variable read is recorded in ``used`` (name to value) when it is given.
    """
    environ = os.environ if environ is None else environ
    problems: list[Problem] = []
    reading = _RecordingEnviron(environ, {} if used is None else used)
    resolved = _resolve(data, (), origins, reading, problems)
    if problems:
        raise ConfigError(problems)
    return resolved


class _RecordingEnviron(Mapping[str, str]):
    """A read-only view of the environment that records every variable read."""

    def __init__(self, environ: Mapping[str, str], used: dict[str, str]) -> None:
        self._environ = environ
        self.used = used

    def __getitem__(self, name: str) -> str:
        value = self._environ[name]
        self.used[name] = value
        return value

    def __contains__(self, name: object) -> bool:
        return name in self._environ

    def __iter__(self):
        return iter(self._environ)

    def __len__(self) -> int:
        return len(self._environ)


def _resolve(value: Any, path: FieldPath, origins: Mapping[FieldPath, Origin],
             environ: Mapping[str, str], problems: list[Problem]) -> Any:
    if isinstance(value, dict):
        return {key: _resolve(child, (*path, key), origins, environ, problems)
                for key, child in value.items()}
    if isinstance(value, list):
        return [_resolve(child, (*path, index), origins, environ, problems)
                for index, child in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        origin = origins.get(path)
        where = origin.location if origin else None
        if not _VARIABLE_NAME.match(name):
            problems.append(_problem(
                f"invalid variable reference ${{{name}}}; names are letters, digits and '_'",
                format_path(path), where))
            return ""
        if name not in environ:
            problems.append(_problem(
                f"environment variable {name} is not set (used as ${{{name}}}); export it "
                "before running, or write the value", format_path(path), where))
            return ""
        return environ[name]

    resolved = _REFERENCE.sub(substitute, value)
    origin = origins.get(path)
    if origin is not None and origin.location is not None and origin.location.plain:
        return _typed_scalar(resolved) if "${" in value else resolved
    return resolved


def _typed_scalar(text: str) -> Any:
    """Read an unquoted value after ``${VAR}`` substitution as a number or boolean.

    ``min_containers: ${MIN}`` with MIN=1 gives the number 1, as if 1 had been written.
    Only YAML 1.2 core forms count (decimal integers, true, false), so a variable that
    contains 0755 or yes stays text and the schema reports it.
    """
    if _INTEGER.match(text):
        return int(text)
    if text in ("true", "false"):
        return text == "true"
    return text


def _problem(message: str, path: str, where: Location | None) -> Problem:
    if where is None:
        return Problem(message, path=path)
    return Problem(message, path=path, file=where.file, line=where.line, column=where.column)

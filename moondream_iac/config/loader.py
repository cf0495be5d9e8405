"""Load deploy.yaml into a DeploySpec, reporting every problem at FILE:LINE:COLUMN."""

from __future__ import annotations

import datetime
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from moondream_iac.config.layers import (
    Layer,
    Origin,
    base_layer,
    environment_layer,
    environment_names,
    merge_layers,
    resolve_references,
    set_layer,
)
from moondream_iac.config.yamlfile import (
    FieldPath,
    Location,
    format_path,
    is_boolean_word,
    read_yaml_file,
)
from moondream_iac.errors import ConfigError, Problem
from moondream_iac.spec.schema import (
    COMMIT_SHA,
    MODAL_WEB_CUTOFF_S,
    MODAL_NAME,
    WEB_LABEL,
    DeploySpec,
    RuleError,
)

# Option names that Modal removed; they raise DeprecationError in modal 1.x.
REMOVED_MODAL_NAMES = {
    "keep_warm": "autoscaling.min_containers",
    "container_idle_timeout": "autoscaling.scaledown_window",
    "concurrency_limit": "autoscaling.max_containers",
    "allow_concurrent_inputs": "concurrency.max_inputs",
}
# Keys allowed at the top level besides the schema's fields.
FILE_ONLY_KEYS = ("environments",)

_PATTERN_HINTS = {
    MODAL_NAME: "use letters, digits, '.', '_' and '-', starting with a letter or digit, "
                "at most 64 characters",
    WEB_LABEL: "use lowercase letters, digits and '-', starting and ending with a letter "
               "or digit, at most 63 characters",
}


@dataclass
class LoadedConfig:
    """A validated spec, with where each value came from and the warnings found."""

    spec: DeploySpec
    path: Path
    environment: str | None
    origins: dict[FieldPath, Origin]
    warnings: list[Problem] = field(default_factory=list)
    # The merged data as written, before defaults: explain needs to know which values
    # came as a compact form (gpu: "H100:2") rather than a mapping.
    raw: dict[str, Any] = field(default_factory=dict)

    def origin(self, path: FieldPath) -> Origin:
        """Return the layer that set ``path``, or the schema default."""
        return self.origins.get(tuple(path)) or Origin("default", None)


def load_config(
    path: Path,
    *,
    environment: str | None = None,
    overrides: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> LoadedConfig:
    """Read, merge and validate a deploy file; raise ConfigError listing every problem."""
    document = read_yaml_file(path)
    layers: list[Layer] = [base_layer(document)]
    if environment is not None:
        layers.append(environment_layer(document, environment))
    if overrides:
        layers.append(set_layer(overrides))

    data, origins = merge_layers(layers)
    data = resolve_references(data, origins, environ)

    problems = list(document.problems) + _boolean_word_problems(data, origins)
    try:
        spec = DeploySpec.model_validate(data)
    except ValidationError as error:
        problems += [_to_problem(item, origins, str(path)) for item in error.errors()]
        raise ConfigError(_sorted(problems)) from None
    if problems:
        raise ConfigError(_sorted(problems))

    loaded = LoadedConfig(spec, path, environment, origins, raw=data)
    loaded.warnings = spec_warnings(loaded)
    return loaded


def load_every_environment(path: Path, *, environ: Mapping[str, str] | None = None,
                           overrides: Sequence[str] = ()) -> list[LoadedConfig]:
    """Load the base spec and each environment; raise ConfigError on any problem in any.

    Two environments that would deploy the same Modal app (same Modal environment, app
    name and label) are an error, so dev can never overwrite prod.
    """
    document = read_yaml_file(path)
    names: list[str | None] = [None, *environment_names(document)]
    loaded: list[LoadedConfig] = []
    problems: list[Problem] = []
    for name in names:
        try:
            loaded.append(load_config(path, environment=name, overrides=overrides,
                                      environ=environ))
        except ConfigError as error:
            problems += [p for p in error.problems if p not in problems]
    if problems:
        raise ConfigError(problems)

    problems = _collisions([config for config in loaded if config.environment is not None])
    if problems:
        raise ConfigError(problems)
    return loaded


def _collisions(configs: Sequence[LoadedConfig]) -> list[Problem]:
    seen: dict[tuple[str, str, str], str] = {}
    problems: list[Problem] = []
    for config in configs:
        if config.spec.target != "modal":
            continue
        app = config.spec.app
        key = (app.environment or "", app.name, app.label)
        if key in seen:
            where = config.origin(("app",)).location
            problems.append(Problem(
                f"environments {seen[key]!r} and {config.environment!r} deploy the same Modal "
                f"app (environment {app.environment or 'default'}, app {app.name}, label "
                f"{app.label}); give each its own app.environment or app.name and app.label",
                path=f"environments.{config.environment}",
                file=str(config.path), line=where.line if where else None,
                column=where.column if where else None,
            ))
        seen[key] = str(config.environment)
    return problems


def spec_warnings(loaded: LoadedConfig) -> list[Problem]:
    """Return the settings that are valid but probably not what the user wants."""
    spec = loaded.spec
    warnings: list[tuple[FieldPath, str]] = []
    if spec.timeouts.request > MODAL_WEB_CUTOFF_S and spec.target == "modal":
        warnings.append((("timeouts", "request"),
                         f"{spec.timeouts.request} s is above Modal's {MODAL_WEB_CUTOFF_S} s "
                         "cutoff for web requests, so longer requests fail with a 303 that "
                         f"no Moondream client follows; use at most {MODAL_WEB_CUTOFF_S - 10}"))
    if COMMIT_SHA.match(spec.model.revision):
        warnings.append((("model", "revision"),
                         "a raw commit sha is not in the revision table, so its requirements "
                         "(tokenizer repo, transformers version) are assumed to be those of "
                         "the newest known release"))
    if spec.model.allow_moving_revision:
        warnings.append((("model", "allow_moving_revision"),
                         "a moving revision serves whatever the branch points at on each "
                         "weights sync; pin a tag for reproducible deploys"))
    if spec.auth.mode == "none":
        warnings.append((("auth", "mode"),
                         "the endpoint is open to anyone who has its URL"))
    if spec.autoscaling.min_containers > 0 and spec.target == "modal":
        warnings.append((("autoscaling", "min_containers"),
                         f"{spec.autoscaling.min_containers} container(s) stay up and are "
                         "billed around the clock; see `plan` for the cost"))
    if spec.autoscaling.scaledown_window < 60 and spec.target == "modal":
        warnings.append((("autoscaling", "scaledown_window"),
                         f"{spec.autoscaling.scaledown_window} s is likely shorter than a "
                         "cold start, which gives repeated cold starts"))
    return [_warning(loaded, path, message) for path, message in warnings]


def _warning(loaded: LoadedConfig, path: FieldPath, message: str) -> Problem:
    where = loaded.origin(path).location
    return Problem(message, path=format_path(path), file=where.file if where else str(loaded.path),
                   line=where.line if where else None, column=where.column if where else None,
                   kind="warning")


def _boolean_word_problems(data: Any, origins: Mapping[FieldPath, Origin]) -> list[Problem]:
    """Flag yes/no/on/off written without quotes: YAML 1.1 turns them into booleans."""
    problems = []
    for path, value in _leaves(data, ()):
        origin = origins.get(path)
        location = origin.location if origin else None
        if isinstance(value, bool) and is_boolean_word(location):
            problems.append(_located(
                f"YAML 1.1 reads the unquoted word {location.text} as {str(value).lower()}; "
                f"write true or false, or \"{location.text}\" in quotes if it is text",
                path, location))
    return problems


def _leaves(value: Any, path: FieldPath):
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _leaves(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _leaves(child, (*path, index))
    else:
        yield path, value


def _to_problem(error: Mapping[str, Any], origins: Mapping[FieldPath, Origin],
                file: str) -> Problem:
    path: FieldPath = tuple(error["loc"])
    context = error.get("ctx") or {}
    cause = context.get("error")
    if isinstance(cause, RuleError):
        path = (*path, *cause.field.split("."))
    message = _message(error, path, _location(path, origins))
    return _located(message, path, _location(path, origins), file)


def _location(path: FieldPath, origins: Mapping[FieldPath, Origin]) -> Location | None:
    for end in range(len(path), -1, -1):
        origin = origins.get(tuple(path[:end]))
        if origin is not None and origin.location is not None:
            return origin.location
    return None


def _message(error: Mapping[str, Any], path: FieldPath, location: Location | None) -> str:
    kind = error["type"]
    value = error.get("input")
    context = error.get("ctx") or {}
    got = _show(value)
    if kind == "extra_forbidden":
        return _unknown_key_message(path)
    if kind == "string_type" and location is not None and location.plain:
        what = _yaml_type_name(value)
        if what:
            return (f"YAML read the unquoted value {location.text} as {what}, but this field "
                    f"is text; write it in quotes: \"{location.text}\"")
    if kind == "value_error":
        return str(context.get("error", error["msg"]))
    if kind in ("greater_than_equal", "greater_than"):
        return f"must be at least {context.get('ge', context.get('gt'))} (got {got})"
    if kind in ("less_than_equal", "less_than"):
        return f"must be at most {context.get('le', context.get('lt'))} (got {got})"
    if kind == "literal_error":
        return f"invalid value (got {got}); use one of: {context.get('expected')}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"expected a whole number (got {got})"
    if kind in ("bool_parsing", "bool_type"):
        return f"expected true or false (got {got})"
    if kind == "string_type":
        return f"expected text (got {got}); write it in quotes"
    if kind == "string_pattern_mismatch":
        hint = _PATTERN_HINTS.get(context.get("pattern"), f"it must match {context.get('pattern')}")
        return f"invalid value (got {got}); {hint}"
    if kind in ("string_too_long", "too_long"):
        return f"too long (got {got}); at most {context.get('max_length')}"
    if kind in ("string_too_short", "too_short"):
        return f"too short (got {got}); at least {context.get('min_length')}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping of settings (got {got})"
    if kind in ("tuple_type", "list_type"):
        return f"expected a list (got {got})"
    return f"{error['msg']} (got {got})"


def _unknown_key_message(path: FieldPath) -> str:
    key = str(path[-1])
    replacement = REMOVED_MODAL_NAMES.get(key)
    if replacement:
        return (f"{key} was removed from Modal (it raises DeprecationError in modal 1.x); "
                f"use {replacement} instead")
    known = _known_keys(path[:-1])
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"unknown key {key!r}; did you mean {close[0]!r}?"
    return f"unknown key {key!r}; known keys here: {', '.join(known)}"


def _known_keys(parent: FieldPath) -> list[str]:
    model: type[BaseModel] = DeploySpec
    for part in parent:
        info = model.model_fields.get(str(part))
        annotation = info.annotation if info else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    keys = list(model.model_fields)
    return keys + list(FILE_ONLY_KEYS) if model is DeploySpec else keys


def _yaml_type_name(value: Any) -> str | None:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return "a date"
    if isinstance(value, (int, float)):
        return "a number"
    if value is None:
        return "null (empty)"
    return None


def _show(value: Any) -> str:
    if isinstance(value, (dict, list)):
        text = "a mapping" if isinstance(value, dict) else "a list"
        return text
    if isinstance(value, str):
        text = repr(value)
    elif isinstance(value, bool):
        text = str(value).lower()
    elif value is None:
        text = "null"
    else:
        text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _located(message: str, path: FieldPath, location: Location | None,
             file: str = "") -> Problem:
    if location is None:
        return Problem(message, path=format_path(path), file=file)
    return Problem(message, path=format_path(path), file=location.file, line=location.line,
                   column=location.column)


def _sorted(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.file, p.line or 0, p.column or 0, p.path))

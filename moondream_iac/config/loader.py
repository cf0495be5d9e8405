"""Load deploy.yaml into a DeploySpec, reporting every problem at FILE:LINE:COLUMN."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from moondream_iac.config.layers import (
    ENVIRONMENTS_KEY,
    Layer,
    Origin,
    base_layer,
    environment_layer,
    environment_names,
    merge_layers,
    resolve_references,
    set_layers,
)
from moondream_iac.config.messages import error_message
from moondream_iac.config.yamlfile import (
    FieldPath,
    Location,
    YamlDocument,
    format_path,
    is_boolean_word,
    read_yaml_file,
)
from moondream_iac.errors import ConfigError, Problem
from moondream_iac.spec.schema import (
    COMMIT_SHA,
    MODAL_WEB_CUTOFF_S,
    DeploySpec,
    RuleError,
    expand_compact_gpu,
)

# Variable values at least this long are replaced by their ${NAME} in messages.
MIN_HIDDEN_VALUE = 6


@dataclass
class LoadedConfig:
    """A validated spec, with where each value came from and the warnings found."""

    spec: DeploySpec
    path: Path
    environment: str | None
    origins: dict[FieldPath, Origin]
    warnings: list[Problem] = field(default_factory=list)
    # The merged data as written, before defaults, with compact forms expanded.
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
    return _load_document(read_yaml_file(path), path, environment, overrides, environ)


def _load_document(document: YamlDocument, path: Path, environment: str | None,
                   overrides: Sequence[str], environ: Mapping[str, str] | None) -> LoadedConfig:
    layers: list[Layer] = [base_layer(document)]
    if environment is not None:
        layers.append(environment_layer(document, environment))
    layers += set_layers(overrides)

    data, origins = merge_layers([_expand_compact_forms(layer) for layer in layers])
    variables: dict[str, str] = {}
    data = resolve_references(data, origins, environ, used=variables)

    problems = list(document.problems) + _boolean_word_problems(data, origins)
    problems += [p for layer in layers for p in layer.problems]
    try:
        spec = DeploySpec.model_validate(data)
    except ValidationError as error:
        problems += _without_repeats(
            [_to_problem(item, origins, str(path)) for item in error.errors()], problems)
    if problems:
        raise ConfigError(_hide_variable_values(_sorted(problems), variables))

    loaded = LoadedConfig(spec, path, environment, origins, raw=data)
    loaded.warnings = _hide_variable_values(spec_warnings(loaded), variables)
    return loaded


def _hide_variable_values(problems: list[Problem], variables: Mapping[str, str]) -> list[Problem]:
    """Write ``${NAME}`` in messages where they would show a variable's value.

    A config value is not meant to be a secret. Still, a deploy file may name a CI
    job's token variable by mistake, and then the log shows only the reference.
    """
    # NOTE: values shorter than MIN_HIDDEN_VALUE stay visible, since replacing "1" or
    # "dev" everywhere would garble messages; such short values are not credentials.
    hidden = [(name, value) for name, value in variables.items()
              if len(value) >= MIN_HIDDEN_VALUE]
    if not hidden:
        return problems

    result = []
    for problem in problems:
        message = problem.message
        for name, value in hidden:
            escaped = repr(value)[1:-1]
            message = message.replace(value, f"${{{name}}}").replace(escaped, f"${{{name}}}")
        result.append(replace(problem, message=message))
    return result


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
            loaded.append(_load_document(document, path, name, overrides, environ))
        except ConfigError as error:
            problems += [p for p in error.problems if p not in problems]

    # Environments that loaded are checked against each other even when others failed,
    # so one run reports every problem.
    problems += _collisions(document, [c for c in loaded if c.environment is not None])
    if problems:
        raise ConfigError(problems)
    return loaded


def _expand_compact_forms(layer: Layer) -> Layer:
    """Write ``gpu: "H100:2"`` as a mapping, so a higher layer can change one field of it.

    Every field of the expanded mapping is located where the compact value was written.
    """
    compact = layer.data.get("gpu")
    expanded = expand_compact_gpu(compact)
    if expanded is compact:
        return layer

    where = layer.locations.get(("gpu",))
    locations = dict(layer.locations)
    if where is not None:
        locations.update({("gpu", key): where for key in expanded})
    return Layer(layer.name, {**layer.data, "gpu": expanded}, locations, layer.problems)


def _without_repeats(schema_problems: list[Problem], found: list[Problem]) -> list[Problem]:
    """Drop schema problems on a field that a YAML reading problem already explains.

    ``mode: yes`` is reported once, as the YAML 1.1 boolean trap, instead of also as
    "invalid value (got true)".
    """
    explained = {problem.path for problem in found}
    return [problem for problem in schema_problems if problem.path not in explained]


def _collisions(document: YamlDocument, configs: Sequence[LoadedConfig]) -> list[Problem]:
    seen: dict[tuple[str, str, str], str] = {}
    problems: list[Problem] = []
    for config in configs:
        if config.spec.target != "modal":
            continue
        app = config.spec.app
        key = (app.environment or "", app.name, app.label)
        if key in seen:
            where = document.locate((ENVIRONMENTS_KEY, str(config.environment)))
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
                         "the newest known release; pin a release tag to use the table's "
                         "requirements"))
    if spec.model.allow_moving_revision:
        warnings.append((("model", "allow_moving_revision"),
                         "a moving revision serves whatever the branch points at on each "
                         "weights sync; pin a tag for reproducible deploys"))
    if spec.auth.mode == "none":
        warnings.append((("auth", "mode"),
                         "the endpoint is open to anyone who has its URL; use api_key or "
                         "proxy unless it must be public"))
    if spec.autoscaling.min_containers > 0 and spec.target == "modal":
        warnings.append((("autoscaling", "min_containers"),
                         f"{spec.autoscaling.min_containers} container(s) stay up and are "
                         "billed around the clock; see `plan` for the cost"))
    if spec.autoscaling.scaledown_window < 60 and spec.target == "modal":
        warnings.append((("autoscaling", "scaledown_window"),
                         f"{spec.autoscaling.scaledown_window} s is likely shorter than a "
                         "cold start, which gives repeated cold starts; raise it above the "
                         "cold-start time, at least 60"))
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
    location = _location(path, origins)
    if isinstance(cause, RuleError):
        parent = path
        path = (*parent, *cause.field.split("."))
        candidates = [path, *((*parent, *name.split(".")) for name in cause.related)]
        location = next(
            (origins[c].location for c in candidates if c in origins and origins[c].location),
            _location(path, origins),
        )
    message = error_message(error, path, location)
    return _located(message, path, location, file)


def _location(path: FieldPath, origins: Mapping[FieldPath, Origin]) -> Location | None:
    """Return where ``path`` was written, else its nearest written parent or child."""
    for end in range(len(path), -1, -1):
        origin = origins.get(tuple(path[:end]))
        if origin is not None and origin.location is not None:
            return origin.location

    # A --set below the path (environments.dev.gpu=T4) writes no location for it.
    for written, origin in origins.items():
        if written[: len(path)] == path and origin.location is not None:
            return origin.location
    return None


def _located(message: str, path: FieldPath, location: Location | None,
             file: str = "") -> Problem:
    if location is None:
        return Problem(message, path=format_path(path), file=file)
    return Problem(message, path=format_path(path), file=location.file, line=location.line,
                   column=location.column)


def _sorted(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.file, p.line or 0, p.column or 0, p.path))

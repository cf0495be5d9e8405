"""Turn one pydantic validation error into a message: what is wrong (got VALUE); how to fix.

The limits quoted in messages are read from the schema's fields, so a message never
disagrees with the model that raised it.
"""

from __future__ import annotations

import datetime
import difflib
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from moondream_iac.config.yamlfile import FieldPath, Location, short_repr
from moondream_iac.spec.schema import (
    ENV_VAR_NAME,
    HOST,
    HUB_REPO,
    MODAL_NAME,
    PLAIN_PATH,
    REVISION,
    WEB_LABEL,
    DeploySpec,
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
    ENV_VAR_NAME: "use letters, digits and '_', not starting with a digit, e.g. "
                  "MOONDREAM_API_KEY",
    HUB_REPO: "write the Hugging Face repository as OWNER/NAME, e.g. vikhyatk/moondream2",
    REVISION: "use a release tag such as 2025-06-21 or a 40-hex commit sha: letters, "
              "digits, '.', '_', '/' and '-', at most 128 characters",
    HOST: "use a host name or an IP address, e.g. 127.0.0.1 or 0.0.0.0",
    PLAIN_PATH: "remove the control characters (newline, tab, NUL) from the path",
}


def error_message(error: Mapping[str, Any], path: FieldPath, location: Location | None) -> str:
    """Return the message for one entry of ``ValidationError.errors()`` at ``path``."""
    kind = error["type"]
    value = error.get("input")
    context = error.get("ctx") or {}
    got = show_value(value)

    if kind == "extra_forbidden":
        return unknown_key_message(path)
    if kind in ("string_type", "model_type", "model_attributes_type", "dict_type") and (
        value is None
    ):
        return "is empty (null); write a value, or remove the key to use the default"
    quoting_fixes = kind == "string_type" or (
        kind == "literal_error" and location is not None and location.text in _choices(path))
    if quoting_fixes and location is not None and location.plain:
        type_name = _yaml_type_name(value)
        if type_name:
            return (f"YAML read the unquoted value {location.text} as {type_name}, but this "
                    f"field is text; write it in quotes: \"{location.text}\"")
    if kind == "value_error":
        return str(context.get("error", error["msg"]))
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        return _bound_message(kind, context, got, path)
    return _type_message(kind, error, context, got, path)


def _bound_message(kind: str, context: Mapping[str, Any], got: str, path: FieldPath) -> str:
    low, high = field_bounds(path)
    allowed = f"; allowed: {low}..{high}" if low is not None and high is not None else ""
    if kind in ("greater_than_equal", "greater_than"):
        return f"must be at least {context.get('ge', context.get('gt'))} (got {got}){allowed}"
    return f"must be at most {context.get('le', context.get('lt'))} (got {got}){allowed}"


def _type_message(kind: str, error: Mapping[str, Any], context: Mapping[str, Any],
                  got: str, path: FieldPath) -> str:
    value = error.get("input")
    if kind == "literal_error":
        return f"invalid value (got {got}); use one of: {context.get('expected')}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"expected a whole number (got {got}){_number_hint(value, path)}"
    if kind in ("bool_parsing", "bool_type"):
        return f"expected true or false (got {got})"
    if kind == "string_type":
        return f"expected text (got {got}); write it in quotes"
    if kind == "string_pattern_mismatch":
        pattern = context.get("pattern")
        hint = _PATTERN_HINTS.get(pattern, f"it must match {pattern}")
        return f"invalid value (got {got}); {hint}"
    if kind == "string_too_long":
        return (f"too long ({len(value)} characters, got {got}); at most "
                f"{context.get('max_length')} characters")
    if kind == "too_long":
        return (f"too many items ({context.get('actual_length')}); at most "
                f"{context.get('max_length')}")
    if kind == "string_too_short":
        return f"too short (got {got}); at least {context.get('min_length')} characters"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping of settings (got {got}); write key: value lines below it"
    if kind in ("tuple_type", "list_type"):
        return f"expected a list (got {got}); write [a, b] or one '- item' line per entry"
    return f"{error['msg']} (got {got})"


def unknown_key_message(path: FieldPath) -> str:
    """Return the message for a key the schema does not define: did-you-mean or the keys."""
    key = str(path[-1])
    # The file's own top-level environments section never reaches the schema, so this
    # key comes from inside an overlay or from --set.
    if key in FILE_ONLY_KEYS:
        return (f"{key} is only allowed at the top level of the deploy file, not inside an "
                "environment or in --set; pick an environment with --env NAME")
    replacement = REMOVED_MODAL_NAMES.get(key)
    if replacement:
        return (f"{key} was removed from Modal (it raises DeprecationError in modal 1.x); "
                f"use {replacement} instead")

    known = known_keys(path[:-1])
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"unknown key {short_repr(key)}; did you mean {close[0]!r}?"
    return f"unknown key {short_repr(key)}; known keys here: {', '.join(known)}"


def known_keys(parent: FieldPath) -> list[str]:
    """Return the keys the schema allows under ``parent`` (empty below a leaf)."""
    model = _model_at(parent)
    if model is None:
        return []
    keys = list(model.model_fields)
    return keys + list(FILE_ONLY_KEYS) if model is DeploySpec else keys


def field_bounds(path: FieldPath) -> tuple[Any, Any]:
    """Return the (minimum, maximum) the schema sets on the number at ``path``."""
    info = _field_at(path)
    if info is None:
        return None, None
    low = high = None
    for constraint in info.metadata:
        low = getattr(constraint, "ge", low)
        high = getattr(constraint, "le", high)
    return low, high


def _choices(path: FieldPath) -> tuple[Any, ...]:
    """Return the values a Literal field allows, or () for any other field."""
    info = _field_at(path)
    return _literal_values(info.annotation) if info is not None else ()


def _literal_values(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)
    return tuple(value for member in typing.get_args(annotation)
                 for value in _literal_values(member))


def _number_hint(value: Any, path: FieldPath) -> str:
    """Say how to write a whole number: unquoted if it was one in quotes, else in its unit."""
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return "; write it without quotes"
    field = _field_at(path)
    extra = field.json_schema_extra if field is not None else None
    unit = extra.get("x-unit") if isinstance(extra, dict) else None
    default = field.default if field is not None else None
    if unit and isinstance(default, int) and not isinstance(default, bool):
        return f"; write a whole number of {unit}, e.g. {default}"
    return ""


def _model_at(path: FieldPath) -> type[BaseModel] | None:
    model: type[BaseModel] = DeploySpec
    for part in path:
        info = model.model_fields.get(str(part))
        annotation = info.annotation if info else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def _field_at(path: FieldPath) -> FieldInfo | None:
    if not path:
        return None
    model = _model_at(path[:-1])
    return model.model_fields.get(str(path[-1])) if model else None


def _yaml_type_name(value: Any) -> str | None:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return "a date"
    if isinstance(value, (int, float)):
        return "a number"
    return None


def show_value(value: Any) -> str:
    """Format a value for ``(got VALUE)``: short, with quotes and escapes for text."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, str):
        text = repr(value)
    elif isinstance(value, bool):
        text = str(value).lower()
    elif value is None:
        text = "null"
    else:
        text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."

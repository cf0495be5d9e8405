"""Parse and check the JSON bodies of the four API routes.

Unknown fields (``variant``, ``model``, ``spatial_refs`` and any other) are ignored, as
the Moondream Cloud does, because the official clients send them. Every error names
the field, the expected type and the value received.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from moondream_iac.server.api_error import ApiError

CAPTION_LENGTHS = ("short", "normal", "long")
MAX_TEXT_CHARS = 4096
# Digits of a JSON integer that is parsed as a number. Longer ones are kept as
# OversizedInteger, so the field check names the field. Python refuses to parse integers
# of more than 4300 digits, and no field of this API needs more than a few.
MAX_INTEGER_DIGITS = 1000
# Known sampling settings: (type, minimum, maximum). Other keys are dropped.
SETTINGS_LIMITS: dict[str, tuple[type, float, float]] = {
    "temperature": (float, 0.0, 2.0),
    "top_p": (float, 0.0, 1.0),
    "max_tokens": (int, 1, 4096),
    "max_objects": (int, 1, 1000),
}


@dataclass(frozen=True)
class CaptionRequest:
    image_url: str
    length: str = "normal"
    stream: bool = False
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class QueryRequest:
    question: str
    image_url: str | None = None
    reasoning: bool = False
    stream: bool = False
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RegionRequest:
    """A detect or point request: both take an image and an object description."""

    image_url: str
    object: str
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OversizedInteger:
    """A JSON integer of more than ``MAX_INTEGER_DIGITS`` digits, left unparsed."""

    digits: int


def _parse_integer(text: str) -> int | OversizedInteger:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        return OversizedInteger(digits=len(text.lstrip("-")))
    return int(text)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Parse a request body that must be a JSON object. Raises ApiError 400."""
    if not raw:
        raise ApiError(400, "the request body is empty: send a JSON object")
    try:
        body = json.loads(raw, parse_int=_parse_integer)
    except RecursionError:
        raise ApiError(
            400, "the request body is not valid JSON for this API: arrays and objects nest too deeply"
        ) from None
    except ValueError as error:
        # json.JSONDecodeError and UnicodeDecodeError are both ValueErrors.
        raise ApiError(400, f"the request body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, not {_type_name(body)}")
    return body


def parse_caption(body: dict[str, Any]) -> CaptionRequest:
    length = _optional_string(body, "length") or "normal"
    if length not in CAPTION_LENGTHS:
        raise ApiError(
            400, f"invalid field 'length': {length[:40]!r}; expected one of {', '.join(CAPTION_LENGTHS)}"
        )
    return CaptionRequest(
        image_url=_required_string(body, "image_url"),
        length=length,
        stream=_optional_bool(body, "stream"),
        settings=_settings(body),
    )


def parse_query(body: dict[str, Any]) -> QueryRequest:
    return QueryRequest(
        question=_required_string(body, "question", max_chars=MAX_TEXT_CHARS),
        image_url=_optional_string(body, "image_url"),
        reasoning=_optional_bool(body, "reasoning"),
        stream=_optional_bool(body, "stream"),
        settings=_settings(body),
    )


def parse_region(body: dict[str, Any]) -> RegionRequest:
    return RegionRequest(
        image_url=_required_string(body, "image_url"),
        object=_required_string(body, "object", max_chars=MAX_TEXT_CHARS),
        settings=_settings(body),
    )


def _required_string(body: dict[str, Any], name: str, *, max_chars: int | None = None) -> str:
    value = _optional_string(body, name, max_chars=max_chars)
    if value is None:
        raise ApiError(400, f"missing field '{name}': expected a string")
    if not value.strip():
        raise ApiError(400, f"invalid field '{name}': the string is empty")
    return value


def _optional_string(body: dict[str, Any], name: str, *, max_chars: int | None = None) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"invalid field '{name}': expected a string, got {_type_name(value)}")
    if not _is_valid_unicode(value):
        raise ApiError(
            400,
            f"invalid field '{name}': the string contains a lone UTF-16 surrogate escape such as "
            "\\ud800, which is not valid Unicode text; escape a character outside the BMP as a "
            "surrogate pair, or send it as UTF-8",
        )
    if max_chars is not None and len(value) > max_chars:
        raise ApiError(
            400, f"invalid field '{name}': {len(value)} characters, above the limit of {max_chars}"
        )
    return value


def _is_valid_unicode(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _optional_bool(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ApiError(400, f"invalid field '{name}': expected true or false, got {_type_name(value)}")
    return value


def _settings(body: dict[str, Any]) -> dict[str, Any]:
    raw = body.get("settings")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ApiError(400, f"invalid field 'settings': expected an object, got {_type_name(raw)}")

    settings: dict[str, Any] = {}
    for name, (kind, minimum, maximum) in SETTINGS_LIMITS.items():
        value = raw.get(name)
        if value is None:
            continue
        settings[name] = _setting_value(name, value, kind, minimum, maximum)
    return settings


def _setting_value(name: str, value: Any, kind: type, minimum: float, maximum: float) -> Any:
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    is_whole = is_number and (isinstance(value, int) or value.is_integer())
    if not is_number or (kind is int and not is_whole):
        expected = "an integer" if kind is int else "a number"
        raise ApiError(
            400, f"invalid field 'settings.{name}': expected {expected}, got {_type_name(value)}"
        )
    if kind is int:
        value = int(value)
    # Compared before float(), which raises OverflowError on an integer above about 1e308.
    if not minimum <= value <= maximum:
        raise ApiError(
            400, f"invalid field 'settings.{name}': {_shorten(str(value))} is outside {minimum} to {maximum}"
        )
    return float(value) if kind is float else value


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, OversizedInteger):
        return f"an integer of {value.digits} digits, above the limit of {MAX_INTEGER_DIGITS}"
    if isinstance(value, (int, float)):
        return f"the number {_shorten(str(value))}"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__

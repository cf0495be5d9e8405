"""Rows for `explain`: every effective field, its value, and the layer that set it."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from moondream_iac.config.layers import Origin
from moondream_iac.config.loader import LoadedConfig
from moondream_iac.config.yamlfile import format_path
from moondream_iac.spec.schema import normalised


class ExplainRow(NamedTuple):
    """One effective field: dotted path, value as JSON text, layer name and location."""

    field: str
    value: str
    layer: str
    location: str


def explain_rows(config: LoadedConfig) -> list[ExplainRow]:
    """List every leaf of the normalised spec with the layer that set it (or default)."""
    rows = []
    for path, value in _leaves(normalised(config.spec), ()):
        origin = _origin_of(config, path)
        location = origin.location.format() if origin.location else ""
        rows.append(ExplainRow(format_path(path), json.dumps(value), origin.layer, location))
    return rows


def _origin_of(config: LoadedConfig, path: tuple) -> Origin:
    origin = config.origins.get(path)
    if origin is not None:
        return origin

    # A field inside a section written in compact form (gpu: "H100:2") was set by it.
    raw: Any = config.raw
    for end, part in enumerate(path[:-1], start=1):
        if not isinstance(raw, dict) or part not in raw:
            break
        raw = raw[part]
        if not isinstance(raw, dict):
            return config.origin(path[:end])
    return config.origin(path)


def _leaves(value: Any, path: tuple):
    if isinstance(value, dict) and value:
        for key, child in value.items():
            yield from _leaves(child, (*path, key))
    else:
        yield path, value

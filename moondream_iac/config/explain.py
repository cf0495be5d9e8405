"""Rows for `explain`: every effective field, its value, and the layer that set it."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

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
        origin = config.origin(path)
        location = origin.location.format() if origin.location else ""
        rows.append(ExplainRow(format_path(path), json.dumps(value), origin.layer, location))
    return rows


def _leaves(value: Any, path: tuple):
    if isinstance(value, dict) and value:
        for key, child in value.items():
            yield from _leaves(child, (*path, key))
    else:
        yield path, value

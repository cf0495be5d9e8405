"""The published JSON Schema of deploy.yaml, generated from the pydantic models.

The committed copy lives at schema/deploy.schema.json; `python -m moondream_iac schema
-o schema/deploy.schema.json` regenerates it and a test fails when it is stale.
"""

from __future__ import annotations

import json
from typing import Any

from moondream_iac.spec.gpus import default_catalog
from moondream_iac.spec.schema import ENVIRONMENT_NAME, DeploySpec

SCHEMA_ID = "https://github.com/moondream-iac/moondream_iac/schema/deploy.schema.json"


def deploy_schema() -> dict[str, Any]:
    """Return the JSON Schema of a deploy file, environments section included.

    Pydantic's output describes the model after its "before" validators ran, so the
    inputs those validators accept are added here: the compact ``gpu: "H100:2"``, a
    single GPU type or region in place of a list, and GPU names in any letter case.
    """
    schema = DeploySpec.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID
    schema["title"] = "moondream_iac deploy.yaml"

    _describe_gpu_inputs(schema)
    _describe_region_inputs(schema)
    _describe_environments(schema)
    return schema


def _describe_gpu_inputs(schema: dict[str, Any]) -> None:
    gpu_name = {
        "anyOf": [
            {"enum": _canonical_gpu_names()},
            {"type": "string", "pattern": f"^(?:{_gpu_name_pattern()})$"},
        ],
        "description": "A Modal GPU type, case-insensitive, e.g. A10G, L4, H100 or H100! "
        "(H100 without Modal's silent upgrade to H200).",
    }
    compact = {
        "type": "string",
        "pattern": f"^(?:{_gpu_name_pattern()})(?::[0-9]+)?$",
        "description": "Compact form TYPE or TYPE:COUNT, e.g. H100:2, for the whole section.",
    }
    section = schema["properties"]["gpu"]
    schema["properties"]["gpu"] = {
        "anyOf": [{"$ref": section.pop("$ref")}, compact], **section,
    }

    properties = schema["$defs"]["GpuSpec"]["properties"]
    fallbacks = properties["fallbacks"]
    field = _without_type(properties["type"])
    field["description"] += f" Aliases: {_alias_text()}."
    properties["type"] = {**gpu_name, **field}
    properties["fallbacks"] = {
        "anyOf": [
            {"type": "array", "items": gpu_name, "maxItems": fallbacks.pop("maxItems")},
            gpu_name,
        ],
        **_without_type(fallbacks, "items"),
    }


def _describe_region_inputs(schema: dict[str, Any]) -> None:
    properties = schema["$defs"]["PlacementSpec"]["properties"]
    region = properties["region"]
    properties["region"] = {
        "anyOf": [
            {"type": "array", "items": region["items"], "maxItems": region["maxItems"]},
            region["items"],
        ],
        **_without_type(region, "items", "maxItems"),
    }


def _describe_environments(schema: dict[str, Any]) -> None:
    overlay = {
        "allOf": [{"$ref": "#"}, {"properties": {"environments": False}}],
        "description": "Fields that differ from the base settings in this environment; "
        "mappings merge key by key, lists and other values replace the base value.",
    }
    schema["$defs"]["EnvironmentOverlay"] = overlay
    schema["properties"]["environments"] = {
        "type": "object",
        "description": "Per-environment overlays, selected with --env NAME: each key is an "
        "environment name, each value holds the fields that differ from the base settings.",
        "additionalProperties": {
            "anyOf": [{"$ref": "#/$defs/EnvironmentOverlay"}, {"type": "null"}],
        },
        "propertyNames": {"pattern": ENVIRONMENT_NAME},
    }


def _without_type(field: dict[str, Any], *also: str) -> dict[str, Any]:
    dropped = {"type", *also}
    return {key: value for key, value in field.items() if key not in dropped}


def _canonical_gpu_names() -> list[str]:
    catalog = default_catalog()
    return [*catalog.gpus, "H100!"]


def _alias_text() -> str:
    aliases = default_catalog().aliases
    return ", ".join(f"{alias} for {name}" for alias, name in aliases.items())


def _gpu_name_pattern() -> str:
    """Return an alternation matching every GPU name and alias in any letter case."""
    catalog = default_catalog()
    names = [*catalog.gpus, *catalog.aliases]
    alternatives = [_any_case(name) for name in names]
    alternatives.append(_any_case("H100") + "!")
    return "|".join(sorted(alternatives, key=len, reverse=True))


def _any_case(name: str) -> str:
    return "".join(f"[{char.upper()}{char.lower()}]" if char.isalpha() else char
                   for char in name)


def schema_text() -> str:
    """Return the schema as stable, indented JSON text ending in a newline."""
    return json.dumps(deploy_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

"""The published JSON Schema of deploy.yaml, generated from the pydantic models.

The committed copy lives at schema/deploy.schema.json; `python -m moondream_iac schema
-o schema/deploy.schema.json` regenerates it and a test fails when it is stale.
"""

from __future__ import annotations

import json
from typing import Any

from moondream_iac.spec.schema import DeploySpec

SCHEMA_ID = "https://github.com/moondream-iac/moondream_iac/schema/deploy.schema.json"


def deploy_schema() -> dict[str, Any]:
    """Return the JSON Schema of a deploy file, environments section included."""
    schema = DeploySpec.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID
    schema["title"] = "moondream_iac deploy.yaml"
    schema["properties"]["environments"] = {
        "type": "object",
        "description": "Per-environment overlays: each key is an environment name, each "
        "value holds the fields that differ from the base settings (merged key by key).",
        "additionalProperties": {"type": "object"},
    }
    return schema


def schema_text() -> str:
    """Return the schema as stable, indented JSON text ending in a newline."""
    return json.dumps(deploy_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

"""The committed JSON Schema: fresh, valid, and in agreement with the loader."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from moondream_iac.config.loader import load_config, load_every_environment
from moondream_iac.errors import ConfigError
from moondream_iac.spec.jsonschema import deploy_schema, schema_text
from moondream_iac.spec.schema import DeploySpec, normalised

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "schema" / "deploy.schema.json"
DEPLOY_FILES = [ROOT / "deploy.yaml", ROOT / "examples" / "deploy.environments.yaml"]
MODELINE = re.compile(r"^# yaml-language-server: \$schema=(\S+)$", re.MULTILINE)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(COMMITTED.read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def test_committed_schema_fresh():
    committed = COMMITTED.read_text(encoding="utf-8")

    assert committed == schema_text(), (
        "schema/deploy.schema.json is stale; regenerate it with: "
        "python -m moondream_iac schema -o schema/deploy.schema.json")


def test_schema_is_valid_2020_12():
    jsonschema.Draft202012Validator.check_schema(deploy_schema())


@pytest.mark.parametrize("path", DEPLOY_FILES, ids=lambda path: path.name)
def test_deploy_file_matches_schema(validator, path):
    document = yaml.safe_load(path.read_text(encoding="utf-8"))

    errors = [error.message for error in validator.iter_errors(document)]

    assert errors == []


@pytest.mark.parametrize("path", DEPLOY_FILES, ids=lambda path: path.name)
def test_modeline_points_at_schema(path):
    match = MODELINE.search(path.read_text(encoding="utf-8"))

    assert match is not None
    assert (path.parent / match.group(1)).resolve() == COMMITTED.resolve()


@pytest.mark.parametrize("path", DEPLOY_FILES, ids=lambda path: path.name)
def test_normalised_spec_matches_schema(validator, path):
    spec = load_config(path, environ={}).spec

    errors = [error.message for error in validator.iter_errors(normalised(spec))]

    assert errors == []


def test_defaults_match_schema(validator):
    assert list(validator.iter_errors(normalised(DeploySpec()))) == []


# (case id, document) that both the loader and the JSON Schema accept
BOTH_ACCEPT = [
    ("empty", {}),
    ("compact_gpu", {"gpu": "h100:2"}),
    ("compact_no_upgrade", {"gpu": "H100!"}),
    ("alias_gpu", {"gpu": {"type": "a100"}}),
    ("single_fallback", {"gpu": {"fallbacks": "l4"}}),
    ("single_region", {"placement": {"region": "us-east"}}),
    ("boundaries", {"autoscaling": {"scaledown_window": 2, "min_containers": 0},
                    "gpu": {"count": 8}, "local": {"port": 65535}}),
    ("null_optional", {"autoscaling": {"max_containers": None}}),
    ("environments", {"environments": {"dev": None,
                                       "prod": {"gpu": "L4:2", "app": {"environment": "prod"}}}}),
]

# (case id, document) that both the loader and the JSON Schema reject
BOTH_REJECT = [
    ("unknown_key", {"gpux": "T4"}),
    ("removed_modal_name", {"autoscaling": {"keep_warm": 1}}),
    ("count_0", {"gpu": {"count": 0}}),
    ("count_9", {"gpu": {"count": 9}}),
    ("count_text", {"gpu": {"count": "2"}}),
    ("count_boolean", {"gpu": {"count": True}}),
    ("scaledown_1", {"autoscaling": {"scaledown_window": 1}}),
    ("scaledown_3601", {"autoscaling": {"scaledown_window": 3601}}),
    ("unknown_gpu", {"gpu": "NOTAGPU"}),
    ("unknown_fallback", {"gpu": {"fallbacks": ["L4", "X1"]}}),
    ("label_upper", {"app": {"label": "Moondream"}}),
    ("name_with_quote", {"app": {"name": 'a"b'}}),
    ("host_newline", {"local": {"host": "a\nb"}}),
    ("weights_dir_nul", {"local": {"weights_dir": "a\x00b"}}),
    ("dtype_choice", {"model": {"dtype": "int4"}}),
    ("version_2", {"version": 2}),
    ("boolean_as_text", {"model": {"allow_moving_revision": "yes"}}),
    ("section_as_list", {"autoscaling": [1]}),
    ("overlay_unknown_key", {"environments": {"dev": {"gpu": {"tpye": "T4"}}}}),
    ("overlay_nested_environments", {"environments": {"dev": {"environments": {}}}}),
    ("environment_name_space", {"environments": {"dev prod": {}}}),
    ("environments_as_list", {"environments": ["dev"]}),
]


def load_document(folder: Path, document: dict) -> None:
    """Load ``document`` as a deploy file, with every environment it defines."""
    path = folder / "deploy.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    load_every_environment(path, environ={})


@pytest.mark.parametrize("document", [case[1] for case in BOTH_ACCEPT],
                         ids=[case[0] for case in BOTH_ACCEPT])
def test_schema_and_loader_accept(tmp_path, validator, document):
    load_document(tmp_path, document)

    assert [error.message for error in validator.iter_errors(document)] == []


@pytest.mark.parametrize("document", [case[1] for case in BOTH_REJECT],
                         ids=[case[0] for case in BOTH_REJECT])
def test_schema_and_loader_reject(tmp_path, validator, document):
    with pytest.raises(ConfigError):
        load_document(tmp_path, document)

    assert list(validator.iter_errors(document)) != []


def test_schema_lists_every_field():
    schema = deploy_schema()

    for section in DeploySpec.model_fields:
        assert section in schema["properties"]
        assert schema["properties"][section].get("description"), section
    for name, definition in schema["$defs"].items():
        for field, info in definition.get("properties", {}).items():
            assert info.get("description"), f"{name}.{field} has no description"

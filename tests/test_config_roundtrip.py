"""Property tests: a valid spec written back as YAML loads to the same spec and hash.

Field values are generated from the schema's own limits (ranges, Literal choices,
patterns), so a change of a limit changes what is generated.
"""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from moondream_iac.config.loader import load_config
from moondream_iac.config.messages import field_bounds
from moondream_iac.errors import ConfigError
from moondream_iac.spec.gpus import default_catalog
from moondream_iac.spec.schema import DeploySpec, normalised, spec_hash

ROOT = Path(__file__).resolve().parent.parent
GPU_NAMES = [*default_catalog().gpus, *default_catalog().aliases]
# Fields whose values a generic strategy would rarely get right.
SPECIAL = {
    ("model", "revision"): st.sampled_from(["2025-06-21", "2025-04-14", "2025-01-09"]),
    ("model", "repo"): st.just("vikhyatk/moondream2"),
    ("model", "allow_moving_revision"): st.just(False),
    ("model", "dtype"): st.sampled_from(["float16", "float32", "auto"]),
    ("volume", "mount_path"): st.sampled_from(["/weights", "/data/w", "/mnt/moondream/"]),
    ("placement", "region"): st.sampled_from([[], ["us-east"], ["eu-west", "us-east-1"]]),
    ("local", "host"): st.sampled_from(["127.0.0.1", "0.0.0.0", "::1", "localhost"]),
    ("local", "weights_dir"): st.sampled_from([".moondream_iac/weights", "/srv/w", "w x"]),
    ("secrets",): st.lists(st.from_regex(r"\A[a-z][a-z0-9-]{0,10}\Z"), max_size=3,
                           unique=True),
}


def any_case(name: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(name), max_size=len(name)).map(
        lambda flags: "".join(c.lower() if flag else c.upper() for c, flag in zip(name, flags)))


gpu_name = st.sampled_from(GPU_NAMES).flatmap(any_case)
gpu_section = st.one_of(
    st.fixed_dictionaries({}, optional={
        "type": gpu_name, "count": st.integers(1, 8),
        "fallbacks": st.lists(gpu_name, max_size=3),
    }),
    st.tuples(gpu_name, st.integers(1, 8)).map(lambda pair: f"{pair[0]}:{pair[1]}"),
)


def field_strategy(path: tuple[str, ...], annotation: typing.Any,
                   pattern: str | None) -> st.SearchStrategy[typing.Any]:
    """Return values the schema accepts for one leaf field."""
    if path in SPECIAL:
        return SPECIAL[path]
    options = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return st.sampled_from(options)
    if annotation is bool:
        return st.booleans()
    if annotation is int or int in options:
        low, high = field_bounds(path)
        values = st.integers(low, high)
        return st.one_of(st.none(), values) if type(None) in options else values
    if pattern:
        return st.from_regex(pattern, fullmatch=True)
    literal = next((option for option in options
                    if typing.get_origin(option) is typing.Literal), None)
    if literal is not None:
        return st.sampled_from([None, *typing.get_args(literal)])
    return st.text(min_size=1, max_size=10)


def pattern_of(info) -> str | None:
    for item in info.metadata:
        if getattr(item, "pattern", None):
            return item.pattern
    for option in typing.get_args(info.annotation):
        for item in getattr(option, "__metadata__", ()):
            for inner in getattr(item, "metadata", ()):
                if getattr(inner, "pattern", None):
                    return inner.pattern
    return None


def section_strategy(name: str, model: type[BaseModel]) -> st.SearchStrategy[dict]:
    optional = {
        field: field_strategy((name, field), info.annotation, pattern_of(info))
        for field, info in model.model_fields.items()
    }
    return st.fixed_dictionaries({}, optional=optional)


def document_strategy() -> st.SearchStrategy[dict]:
    optional: dict[str, st.SearchStrategy] = {"gpu": gpu_section}
    for name, info in DeploySpec.model_fields.items():
        if name in optional:
            continue
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            optional[name] = section_strategy(name, info.annotation)
        else:
            optional[name] = field_strategy((name,), info.annotation, pattern_of(info))
    return st.fixed_dictionaries({}, optional=optional)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((ROOT / "schema" / "deploy.schema.json").read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("roundtrip")


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(document=document_strategy())
def test_spec_roundtrip_same_hash(folder, validator, document):
    written = folder / "deploy.yaml"
    written.write_text(yaml.safe_dump(document), encoding="utf-8")
    try:
        spec = load_config(written, environ={}).spec
    except ConfigError as error:
        # Cross-field rules (min <= max, bfloat16 on T4, repeated fallbacks) reject some.
        assume(all(re.search(r"must not|not supported", p.message) for p in error.problems))
        return

    dumped = folder / "dumped.yaml"
    dumped.write_text(yaml.safe_dump(normalised(spec)), encoding="utf-8")
    reloaded = load_config(dumped, environ={}).spec

    assert spec_hash(reloaded) == spec_hash(spec)
    assert reloaded == spec
    assert list(validator.iter_errors(document)) == []
    assert list(validator.iter_errors(normalised(spec))) == []

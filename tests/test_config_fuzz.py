"""Property tests: any input gives a spec or a ConfigError of one-line messages, never a crash.

Two generators: text built from YAML fragments (syntax, anchors, tags, YAML 1.1 traps)
and documents built from the schema's own keys with values of every YAML type.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moondream_iac.config.loader import load_config, load_every_environment
from moondream_iac.errors import ConfigError
from moondream_iac.spec.schema import DeploySpec

FRAGMENTS = [
    "gpu", "type", "count", ":", " ", "\n", "  ", "- ", "[", "]", "{", "}", ",", "'", '"',
    "&a", "*a", "!!int", "!!str", "!!python/object:os.system", "!x", "?", "#", "0300", "1:30",
    "yes", "no", "on", "2025-06-21", "H100:2", "h100!", "~", "null", "environments", "dev",
    "prod", "${X}", "${", "$$", "\t", "\\", "%YAML 1.1\n", "---\n", "...\n", "<<",
    "autoscaling", "scaledown_window", "min_containers", "1", "-1", "3601", "1e3", ".inf",
    ".nan", "0x1F", "0o17", "version", "app", "label", "model", "revision", "\u00e9", "\x85",
    "\ufeff", "\x1f", "|\n", ">\n",
]
SET_VALUES = ["gpu.count=2", "gpu=T4", "x=1", "gpu.type=[", "a.b.c=", "autoscaling=1:30",
              "gpu.fallbacks=[a, b]", "environments.dev=1", "=", "app.name=${X}"]

yaml_text = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=3)),
                     max_size=40).map("".join)


def schema_keys() -> list[str]:
    keys = {"environments", "dev", "prod", "keep_warm", "tpye"}
    pending = [DeploySpec]
    while pending:
        model = pending.pop()
        for name, info in model.model_fields.items():
            keys.add(name)
            if hasattr(info.annotation, "model_fields"):
                pending.append(info.annotation)
    return sorted(keys)


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 100_000), st.floats(), st.text(max_size=12),
    st.dates(),
    st.sampled_from(["H100:2", "h100!", "T4", "main", "2025-06-21", "/", "/tmp", "..",
                     "${X}", "$$", "A10G!", "float16", "local", "none", "us-east", "a" * 3000]),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.sampled_from(schema_keys()), children,
                                               max_size=5)),
    max_leaves=20,
)
documents = st.dictionaries(st.sampled_from(schema_keys()), values, max_size=8)


def assert_one_line_problems(error: ConfigError) -> None:
    assert error.problems
    for problem in error.problems:
        line = problem.format()
        assert "\n" not in line, repr(line)
        assert "\r" not in line, repr(line)
        assert len(line) < 2000, line[:200]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "deploy.yaml"


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=yaml_text, sets=st.lists(st.sampled_from(SET_VALUES), max_size=2))
def test_yaml_fragments_never_crash(scratch, text, sets):
    scratch.write_bytes(text.encode("utf-8", "surrogatepass"))

    for environment in (None, "dev"):
        try:
            load_config(scratch, environment=environment, overrides=sets, environ={"X": "1"})
        except ConfigError as error:
            assert_one_line_problems(error)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(document=documents)
def test_schema_shaped_documents_never_crash(scratch, document):
    scratch.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")

    try:
        load_every_environment(scratch, environ={"X": "1"})
    except ConfigError as error:
        assert_one_line_problems(error)

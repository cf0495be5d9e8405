"""Property test: hostile strings in any string field of the spec stay string literals.

A value with quotes, triple quotes, backslashes, newlines, Jinja markup or non-ASCII
text must render to a file that parses and appears in it only as a string constant. It
must also add no other syntax node, so the file's AST with constant values blanked out
equals the AST of the same spec rendered with plain values in the free-text fields.
"""

from __future__ import annotations

import ast
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pydantic import BaseModel

from moondream_iac.render import render_app
from moondream_iac.spec.schema import (
    FORBIDDEN_MOUNTS,
    MODAL_NAME,
    MOVING_REVISIONS,
    AppSpec,
    AuthSpec,
    DeploySpec,
    LocalSpec,
    ModelSpec,
    VolumeSpec,
)

HOSTILE_PIECES = [
    "'", '"', "'''", '"""', "\\", "\\n", "\n", "\r\n", "{{ app_name }}", "{{", "}}",
    "{% if true %}", "{%", "%}", "{#", "#}", "#", "); import os; os.system('x') #",
    "\x00", "\u2028", "é", "模型", "🙂", "\t", "\\'", "${HOME}",
]
CONTROL = re.compile(r"[\x00-\x1f\x7f]")

hostile_text = st.lists(
    st.one_of(st.sampled_from(HOSTILE_PIECES), st.text(max_size=8)), min_size=1, max_size=8
).map("".join)


def schema_pattern(model: type[BaseModel], name: str) -> str | None:
    """Return the regex the schema puts on a string field, or None."""
    for item in model.model_fields[name].metadata:
        pattern = getattr(item, "pattern", None)
        if pattern:
            return pattern
    return None


def free_text(model: type[BaseModel], name: str) -> st.SearchStrategy[str]:
    """Return hostile text that the schema's pattern for the field still accepts.

    Control characters are removed first, since every free-text field rejects them.
    """
    pattern = schema_pattern(model, name)
    text = hostile_text.map(lambda value: CONTROL.sub("", value))
    if pattern is None:
        return text.filter(bool)
    return text.filter(lambda value: re.fullmatch(pattern, value) is not None)


def patterned(model: type[BaseModel], name: str) -> st.SearchStrategy[str]:
    """Return values generated from the schema's own pattern for the field."""
    return st.from_regex(schema_pattern(model, name), fullmatch=True)


modal_name = st.from_regex(MODAL_NAME, fullmatch=True)
web_label = patterned(AppSpec, "label").filter(lambda label: "--" not in label)
env_var_name = patterned(AuthSpec, "key_env")
# The revision table lists vikhyatk/moondream2 only, so any other repo takes any revision.
unlisted_repo = patterned(ModelSpec, "repo").filter(lambda repo: repo != "vikhyatk/moondream2")
revision = patterned(ModelSpec, "revision").filter(
    lambda text: text.lower() not in MOVING_REVISIONS
)
mount_segment = free_text(VolumeSpec, "mount_path").map(lambda text: text.replace("/", "")).filter(
    lambda text: text not in ("", ".", "..")
)
mount_path = st.lists(mount_segment, min_size=1, max_size=3).map(
    lambda parts: "/" + "/".join(parts)
).filter(lambda path: path not in FORBIDDEN_MOUNTS and len(path) <= 255)
host = patterned(LocalSpec, "host") if schema_pattern(LocalSpec, "host") else free_text(LocalSpec, "host")
weights_dir = free_text(LocalSpec, "weights_dir")


@st.composite
def hostile_specs(draw):
    auth_mode = draw(st.sampled_from(["api_key", "proxy", "none"]))
    data = {
        "app": {"name": draw(modal_name), "label": draw(web_label), "environment": draw(modal_name)},
        "model": {
            "repo": draw(unlisted_repo),
            "revision": draw(revision),
            "hub_token_secret": draw(modal_name),
        },
        "volume": {"name": draw(modal_name), "mount_path": draw(mount_path)},
        "secrets": draw(st.lists(modal_name, max_size=3, unique=True)),
        "auth": {"mode": auth_mode, "secret": draw(modal_name), "key_env": draw(env_var_name)},
        "local": {
            "host": draw(host),
            "weights_dir": draw(weights_dir),
        },
    }
    return DeploySpec.model_validate(data)


def plain_twin(spec: DeploySpec) -> DeploySpec:
    """Return ``spec`` with each free-text field set to a plain value."""
    data = spec.model_dump(mode="json")
    data["model"]["revision"] = "plain-revision"
    data["volume"]["mount_path"] = "/plain/mount"
    data["local"]["host"] = "plain-host"
    data["local"]["weights_dir"] = "plain-dir"
    return DeploySpec.model_validate(data)


def skeleton(tree: ast.AST) -> str:
    """Return the AST dump with every constant replaced by its type name."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant):
            node.value = type(node.value).__name__
    return ast.dump(tree, include_attributes=False)


def string_constants(tree: ast.AST) -> set[str]:
    return {node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)}


def rendered_values(spec: DeploySpec) -> list[str]:
    """Return the spec's string values that the app file must carry as whole constants."""
    values = [
        spec.app.name, spec.app.label, spec.app.environment, spec.model.repo,
        spec.model.revision, spec.model.hub_token_secret, spec.volume.name,
        spec.volume.mount_path, *spec.modal_secret_names(),
    ]
    if spec.auth.mode == "api_key":
        values.append(spec.auth.key_env)
    return values


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_specs())
def test_hostile_values_stay_literals(spec):
    source = render_app(spec)
    tree = ast.parse(source)

    constants = string_constants(tree)
    for value in rendered_values(spec):
        assert value in constants, f"{value!r} is not a whole string constant of the app file"

    plain = ast.parse(render_app(plain_twin(spec)))
    assert skeleton(tree) == skeleton(plain)


@settings(max_examples=50, deadline=None)
@given(host, weights_dir, mount_path)
def test_local_fields_add_no_syntax(host_value, weights_dir_value, mount):
    # local.host and local.weights_dir do not reach the app file; if they ever do, they
    # must do so as constants, which the skeleton comparison checks.
    data = {"local": {"host": host_value, "weights_dir": weights_dir_value},
            "volume": {"mount_path": mount}}
    tree = ast.parse(render_app(DeploySpec.model_validate(data)))
    plain = DeploySpec.model_validate({"volume": {"mount_path": "/plain/mount"}})
    assert skeleton(tree) == skeleton(ast.parse(render_app(plain)))

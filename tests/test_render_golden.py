"""Golden files for the rendered Modal app: one per spec under tests/golden, plus deploy.yaml.

Run with UPDATE_GOLDEN=1 to rewrite the golden files after an intended change, then
review the diff.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import yaml

from moondream_iac.config.loader import load_config
from moondream_iac.render import render_app, render_to_dir
from moondream_iac.spec.schema import DeploySpec, spec_hash

REPO_ROOT = Path(__file__).resolve().parent.parent
GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
# A fixed version keeps the golden files stable across releases of the package.
GOLDEN_TOOL_VERSION = "0.0.0"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"

CASES = {
    "deploy_yaml": REPO_ROOT / "deploy.yaml",
    **{path.stem: path for path in sorted(GOLDEN_DIR.glob("*.yaml"))},
}


def read_spec(path: Path) -> DeploySpec:
    return DeploySpec.model_validate(yaml.safe_load(path.read_text("utf-8")))


@pytest.mark.parametrize("name", sorted(CASES))
def test_render_matches_golden(name):
    rendered = render_app(read_spec(CASES[name]), tool_version=GOLDEN_TOOL_VERSION)
    golden = GOLDEN_DIR / f"{name}.py"
    if UPDATE:
        golden.write_text(rendered, "utf-8")
    assert golden.is_file(), f"missing {golden}; run with UPDATE_GOLDEN=1 to create it"
    assert rendered == golden.read_text("utf-8"), (
        f"rendered app for {CASES[name].name} differs from {golden.name}; if the change is "
        "intended, rerun with UPDATE_GOLDEN=1 and review the diff"
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_file_parses(name):
    source = (GOLDEN_DIR / f"{name}.py").read_text("utf-8")
    ast.parse(source)


def test_loader_path_renders_golden():
    loaded = load_config(REPO_ROOT / "deploy.yaml")
    rendered = render_app(loaded.spec, tool_version=GOLDEN_TOOL_VERSION)
    assert rendered == (GOLDEN_DIR / "deploy_yaml.py").read_text("utf-8")


def test_render_is_deterministic():
    spec = read_spec(CASES["fallback_proxy"])
    first = render_app(spec)
    second = render_app(read_spec(CASES["fallback_proxy"]))
    assert first.encode("utf-8") == second.encode("utf-8")


def test_header_records_hash_and_version():
    spec = read_spec(CASES["deploy_yaml"])
    header = render_app(spec, tool_version="1.2.3").splitlines()[0]
    assert spec_hash(spec) in header
    assert "1.2.3" in header


def test_render_rejects_odd_tool_version():
    with pytest.raises(ValueError, match="tool_version"):
        render_app(DeploySpec(), tool_version="1.0\nimport os")


def test_render_to_dir_writes_app_file(tmp_path):
    spec = read_spec(CASES["hub_token"])
    path = render_to_dir(spec, tmp_path / "build")
    assert path == tmp_path / "build" / "moondream-fork" / "modal_app.py"
    assert path.read_text("utf-8") == render_app(spec)
    leftovers = [p.name for p in path.parent.iterdir() if p.name != "modal_app.py"]
    assert leftovers == []


def test_render_to_dir_replaces_old_file(tmp_path):
    first = read_spec(CASES["deploy_yaml"])
    second = first.model_copy(update={"timeouts": first.timeouts.model_copy(update={"request": 90})})
    render_to_dir(first, tmp_path)
    path = render_to_dir(second, tmp_path)
    assert "timeout=90," in path.read_text("utf-8")


def test_no_secret_value_in_file(monkeypatch):
    monkeypatch.setenv("MOONDREAM_API_KEY", "sk-live-should-never-appear")
    monkeypatch.setenv("HF_TOKEN", "hf_should_never_appear")
    for name in CASES:
        source = render_app(read_spec(CASES[name]))
        assert "should-never-appear" not in source
        assert "should_never_appear" not in source


def test_pins_follow_revision_table():
    pyvips = render_app(read_spec(CASES["pyvips_revision"]))
    latest = render_app(read_spec(CASES["deploy_yaml"]))
    assert "'libvips42'" in pyvips
    assert "'pyvips==2.2.3'" in pyvips
    assert "libvips42" not in latest
    assert "'transformers==4.57.6'" in latest


def test_defaults_left_out():
    source = render_app(read_spec(CASES["deploy_yaml"]))
    assert "min_containers" not in source
    assert "buffer_containers" not in source
    assert "region=" not in source
    assert "cloud=" not in source
    assert "requires_proxy_auth" not in source
    assert "environment_name" not in source

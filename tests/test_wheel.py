"""Build the wheel and render from the installed package, not from the checkout.

Proves that the templates travel inside the wheel (as moondream_iac/templates) and
that an installed moondream-iac renders the same file as the checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from moondream_iac.render import render_app
from moondream_iac.spec.schema import DeploySpec

REPO_ROOT = Path(__file__).resolve().parent.parent

RENDER_FROM_INSTALL = """
import sys
from pathlib import Path
import moondream_iac
from moondream_iac.render import render_app
from moondream_iac.render.renderer import templates_root
from moondream_iac.spec.schema import DeploySpec

installed = Path(sys.argv[1]).resolve()
assert Path(moondream_iac.__file__).resolve().is_relative_to(installed), moondream_iac.__file__
assert Path(str(templates_root())).resolve().is_relative_to(installed), templates_root()
sys.stdout.write(render_app(DeploySpec()))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # hatchling is installed in the test environment, so no isolated build env is needed.
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO_ROOT), "--no-deps",
         "--no-build-isolation", "-w", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    (path,) = out.glob("moondream_iac-*.whl")
    return path


@pytest.mark.slow
def test_wheel_contains_templates(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "moondream_iac/templates/modal_app.py.j2" in names
    assert "moondream_iac/data/revisions.yaml" in names


@pytest.mark.slow
def test_installed_wheel_renders(wheel, tmp_path):
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
         "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=120,
    )
    assert install.returncode == 0, install.stderr

    # PYTHONPATH comes before the checkout's editable-install path entry, and the working
    # directory is outside the checkout, so the import resolves to the installed copy.
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run(
        [sys.executable, "-c", RENDER_FROM_INSTALL, str(target)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == render_app(DeploySpec())

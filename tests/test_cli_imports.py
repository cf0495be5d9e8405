"""The light CLI commands never import torch, transformers or modal.

Each command runs in a fresh interpreter through runpy, the way `python -m
moondream_iac` runs it; the probe then prints the heavy packages found in sys.modules.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "modal", "accelerate", "huggingface_hub", "safetensors")

PROBE = """
import contextlib, io, json, runpy, sys
sys.argv = ["moondream_iac", *sys.argv[1:]]
code = 0
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
        runpy.run_module("moondream_iac", run_name="__main__")
    except SystemExit as exit:
        code = exit.code or 0
heavy = %r
print(json.dumps({"code": code,
                  "heavy": sorted({name.split(".")[0] for name in sys.modules} & set(heavy))}))
""" % (HEAVY,)

# (case id, CLI arguments, expected exit code)
COMMANDS = [
    ("help", ["--help"], 0),
    ("validate", ["validate"], 0),
    ("validate_json", ["validate", "--json"], 0),
    ("validate_broken", ["validate", "--set", "gpu.count=0"], 1),
    ("explain", ["explain"], 0),
    ("schema", ["schema"], 0),
    ("render", ["render", "-o", "build"], 0),
    ("plan_local", ["plan", "--target", "local", "--no-refresh"], 0),
    ("plan_local_detailed", ["plan", "--target", "local", "--no-refresh",
                             "--detailed-exitcode", "--json"], 2),
    # With no Modal token, plan on the modal target stops at the credential check;
    # what it imported before stopping still counts.
    ("plan_modal_no_token", ["plan", "--no-refresh"], 1),
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli_imports")
    shutil.copy(ROOT / "deploy.yaml", path / "deploy.yaml")
    return path


@pytest.mark.parametrize(("arguments", "code"), [case[1:] for case in COMMANDS],
                         ids=[case[0] for case in COMMANDS])
def test_command_skips_heavy_imports(folder, arguments, code):
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith("MODAL_")}
    environment.update({"MOONDREAM_API_KEY": "test-key-for-import-probe",
                        "HOME": str(folder)})

    result = subprocess.run([sys.executable, "-c", PROBE, *arguments], cwd=folder,
                            env=environment, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["code"] == code
    assert report["heavy"] == []

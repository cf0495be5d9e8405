"""Errors outside the config file still end in one line and exit 1, never a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "moondream_iac", *args], cwd=cwd,
                          env=dict(os.environ), capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "args, message",
    [
        (("schema", "-o", "."), "error: cannot use .: Is a directory"),
        (("render", "-o", "deploy.yaml"), "error: cannot use deploy.yaml/moondream: Not a directory"),
        (("validate", "--no-such-flag"), "No such option: --no-such-flag"),
    ],
)
def test_output_errors_one_line(tmp_path, args, message):
    shutil.copy(REPO / "deploy.yaml", tmp_path / "deploy.yaml")

    result = run_cli(tmp_path, *args)

    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr

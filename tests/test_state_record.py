"""Hand-edited applied records: plan and status fail in one line naming the file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from moondream_iac.errors import TargetError
from moondream_iac.state.record import check_record

REPO = Path(__file__).resolve().parents[1]
RECORD_RELATIVE = Path(".moondream_iac") / "local" / "moondream" / "record.json"


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MOONDREAM_API_KEY", "MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET")}
    env["HOME"] = str(cwd)
    return subprocess.run([sys.executable, "-m", "moondream_iac", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def write_record(folder: Path, record: object) -> Path:
    shutil.copy(REPO / "deploy.yaml", folder / "deploy.yaml")
    path = folder / RECORD_RELATIVE
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record))
    return path


BROKEN_RECORDS = [
    ({"record_version": 1, "spec": "x", "state": "applied"}, "'spec'"),
    ({"record_version": 1, "spec": {"model": 5}}, "'spec.model'"),
    ({"record_version": 1, "spec": {"model": {"revision": ["a"]}}}, "'spec.model.revision'"),
    ({"record_version": 1, "spec": {}, "state": "gone"}, "'state'"),
    ({"record_version": 1, "spec": {}, "weights_lock": "abc"}, "'weights_lock'"),
    ({"record_version": 1, "spec": {}, "previous": {"spec": 3}}, "'previous.spec'"),
    ({"record_version": 1}, "'spec'"),
]


@pytest.mark.parametrize(("record", "field"), BROKEN_RECORDS)
def test_plan_rejects_edited_record(tmp_path, record, field):
    path = write_record(tmp_path, record)

    result = run_cli(tmp_path, "plan", "--target", "local")

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0]
    assert field in lines[0]
    assert "remove it and run apply again" in lines[0]


@pytest.mark.parametrize(("record", "field"), BROKEN_RECORDS[:2])
def test_status_rejects_edited_record(tmp_path, record, field):
    path = write_record(tmp_path, record)

    result = run_cli(tmp_path, "status", "--target", "local")

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0]
    assert field in lines[0]


def test_check_record_accepts_built_shape():
    record = {
        "record_version": 1, "state": "destroyed", "spec": {"model": {"repo": "a/b", "revision": "r"}},
        "spec_hash": "h", "url": None, "weights_lock": {"sha": "s", "files": {}},
        "cold_start_seconds": 1.5, "smoke": None, "details": {}, "previous": None,
    }

    assert check_record(record, where="record.json") is record


def test_check_record_rejects_bool_number():
    record = {"record_version": 1, "spec": {}, "cold_start_seconds": True}

    with pytest.raises(TargetError) as caught:
        check_record(record, where="record.json")

    assert "'cold_start_seconds' is true or false" in str(caught.value)

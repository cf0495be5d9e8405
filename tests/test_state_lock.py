"""The deployment file lock with symbolic links planted in its state folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moondream_iac.errors import LockHeldError
from moondream_iac.state.lock import file_lock

VICTIM_TEXT = "the victim's own content\n"


def test_holder_link_not_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text(VICTIM_TEXT)
    state = tmp_path / "state"
    state.mkdir()
    holder_path = state / "apply.lock.holder.json"
    holder_path.symlink_to(victim)

    with file_lock(state / "apply.lock", "apply", deployment="local:test") as holder:
        assert not holder_path.is_symlink()
        assert json.loads(holder_path.read_text())["pid"] == holder.pid
        assert victim.read_text() == VICTIM_TEXT

    assert victim.read_text() == VICTIM_TEXT
    assert not holder_path.exists()


def test_lock_link_fails_in_one_line(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    lock_path = state / "apply.lock"
    lock_path.symlink_to(tmp_path / "elsewhere.lock")

    with pytest.raises(LockHeldError) as caught:
        with file_lock(lock_path, "apply", deployment="local:test"):
            pass

    message = str(caught.value)
    assert "\n" not in message
    assert str(lock_path) in message
    assert "symbolic link" in message
    assert "delete the link" in message


def test_lock_released_and_retaken(tmp_path):
    lock_path = Path(tmp_path) / "apply.lock"

    with file_lock(lock_path, "apply", deployment="local:test"):
        with pytest.raises(LockHeldError):
            with file_lock(lock_path, "destroy", deployment="local:test"):
                pass

    with file_lock(lock_path, "destroy", deployment="local:test") as holder:
        assert holder.purpose == "destroy"

"""The deployment lock: one apply per deployment at a time; the other run gets the holder named."""

from __future__ import annotations

import datetime
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from moondream_iac.errors import LockHeldError
from moondream_iac.state.lock import file_lock, record_lock
from test_apply_flow import Deployment

HOLD_LOCK = """
import sys, time
from pathlib import Path
from moondream_iac.state.lock import file_lock
with file_lock(Path(sys.argv[1]), "apply", deployment="demo"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


class MemoryStore:
    """A key-value store with an atomic put-if-absent, shaped like modal.Dict."""

    def __init__(self) -> None:
        self.data: dict = {}
        self.mutex = threading.Lock()

    def put(self, key, value, *, skip_if_exists=False) -> bool:
        with self.mutex:
            if skip_if_exists and key in self.data:
                return False
            self.data[key] = value
            return True

    def get(self, key, default=None):
        return self.data.get(key, default)

    def pop(self, key, default=None):
        with self.mutex:
            return self.data.pop(key, default)


def test_file_lock_held_by_other_process(tmp_path: Path):
    lock_path = tmp_path / "apply.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock_path), "30"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockHeldError) as raised:
            with file_lock(lock_path, "apply", deployment="demo"):
                pass
    finally:
        holder.kill()
        holder.wait()

    message = str(raised.value)
    assert f"pid {holder.pid}" in message
    assert f"host {socket.gethostname()}" in message
    assert "deployment demo" in message
    assert re.search(r"since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", message)


def test_file_lock_released_when_holder_dies(tmp_path: Path):
    lock_path = tmp_path / "apply.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock_path), "30"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()

    with file_lock(lock_path, "apply", deployment="demo") as taken:
        assert taken.pid == os.getpid()


def test_record_lock_one_winner():
    store = MemoryStore()

    with record_lock(store, "moondream", "apply", deployment="moondream") as first:
        with pytest.raises(LockHeldError) as raised:
            with record_lock(store, "moondream", "apply", deployment="moondream"):
                pass
        assert store.get("moondream")["pid"] == first.pid

    assert f"pid {os.getpid()}" in str(raised.value)
    assert store.get("moondream") is None


def test_record_lock_takes_over_stale_entry():
    store = MemoryStore()
    long_ago = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC).isoformat()
    store.put("moondream", {"host": "ci-7", "pid": 4242, "purpose": "apply", "since": long_ago})

    with record_lock(store, "moondream", "apply", deployment="moondream") as holder:
        assert store.get("moondream")["pid"] == holder.pid


def test_record_lock_keeps_fresh_entry():
    store = MemoryStore()
    now = datetime.datetime.now(datetime.UTC).isoformat()
    store.put("moondream", {"host": "ci-7", "pid": 4242, "purpose": "apply", "since": now})

    with pytest.raises(LockHeldError) as raised:
        with record_lock(store, "moondream", "apply", deployment="moondream"):
            pass

    assert "pid 4242 on host ci-7 (apply)" in str(raised.value)
    assert store.get("moondream")["pid"] == 4242


def test_concurrent_applies_one_wins(tmp_path: Path):
    deployment = Deployment(tmp_path)
    environment = {**os.environ, "MD_TEST_KEY": "k", "STANDIN_DEPLOY_PAUSE_S": "4"}
    command = [sys.executable, str(Path(__file__).parent / "test_apply_standin.py"), "cli",
               "apply", "--auto-approve", "-f", str(deployment.file)]
    try:
        processes = []
        for _ in range(2):
            processes.append(subprocess.Popen(command, cwd=tmp_path, env=environment,
                                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                              stderr=subprocess.PIPE, text=True))
            time.sleep(0.3)
        results = [(process.wait(timeout=90), process.communicate()[1], process.pid)
                   for process in processes]
    finally:
        deployment.stop()

    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 1], results
    (winner_pid,) = [pid for code, _, pid in results if code == 0]
    (loser_error,) = [stderr for code, stderr, _ in results if code == 1]
    assert f"is locked by pid {winner_pid} on host {socket.gethostname()} (apply) since" \
        in loser_error
    assert deployment.deploy_count() == 1

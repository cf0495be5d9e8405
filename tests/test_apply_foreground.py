"""apply --foreground: the local server runs in the CLI's own process until Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from moondream_iac.smoke import get_health
from moondream_iac.testing.fake_hub import FakeHub, publish_moondream

pytestmark = pytest.mark.slow

API_KEY = "md-foreground-key-5e6f7a8b"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen, timeout_s: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read()
        try:
            health = get_health(url, timeout_s=2.0)
        except Exception:  # noqa: BLE001 - not listening yet
            health = None
        if health and health.get("ready"):
            return health
        time.sleep(0.3)
    raise AssertionError("the foreground server did not turn ready")


def test_foreground_serves_until_interrupt(tmp_path: Path):
    port = free_port()
    deploy = tmp_path / "deploy.yaml"
    deploy.write_text(f"version: 1\ntarget: local\nlocal: {{port: {port}, device: cpu}}\n",
                      encoding="utf-8")

    with FakeHub() as hub:
        publish_moondream(hub, tmp_path / "hub", filler_bytes=1024)
        env = {**os.environ, "HF_ENDPOINT": hub.url, "MOONDREAM_API_KEY": API_KEY}
        process = subprocess.Popen(
            [sys.executable, "-m", "moondream_iac", "apply", "--foreground", "-f", str(deploy)],
            cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        try:
            health = wait_ready(f"http://127.0.0.1:{port}/v1", process)
            process.send_signal(signal.SIGINT)
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

    assert health["ready"] is True
    assert health["revision"] == "2025-06-21"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert "Traceback" not in process.stderr.read()

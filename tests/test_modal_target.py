"""The Modal target's fail-fast paths, for real, with every connection kept on 127.0.0.1.

Modal cannot be reached from the test machine, so these tests cover what happens before
the SDK talks to Modal. That is the token lookup, the reachability check, and the
one-line error of every SDK call when the token or the route is missing.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from moondream_iac.errors import TargetError
from moondream_iac.render import render_to_dir
from moondream_iac.spec.schema import DeploySpec
from moondream_iac.targets import modal_target

REPO_ROOT = Path(__file__).resolve().parent.parent


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def modal_env(tmp_path, monkeypatch):
    """No Modal token anywhere, and the control plane pointed at a closed local port."""
    for name in list(os.environ):
        if name.startswith("MODAL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("MODAL_CONFIG_PATH", str(tmp_path / "modal.toml"))
    monkeypatch.setenv("MODAL_SERVER_URL", f"http://127.0.0.1:{closed_port()}")
    return tmp_path


@pytest.fixture
def silent_listener():
    """A TCP port that accepts connections and never replies, like a black-holed TLS server."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted = []

    def accept():
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            accepted.append(connection)

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
    for connection in accepted:
        connection.close()


def write_profile(path: Path, text: str) -> None:
    path.write_text(textwrap.dedent(text), "utf-8")


def test_no_token_one_line(modal_env):
    started = time.monotonic()
    with pytest.raises(TargetError) as caught:
        modal_target.check_credentials()
    message = str(caught.value)
    assert time.monotonic() - started < 2
    assert "\n" not in message
    assert "modal setup" in message
    assert "MODAL_TOKEN_ID" in message
    assert "MODAL_TOKEN_SECRET" in message
    assert str(modal_env / "modal.toml") in message


def test_half_token_names_missing_variable(modal_env, monkeypatch):
    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-test")
    with pytest.raises(TargetError, match="MODAL_TOKEN_SECRET not set") as caught:
        modal_target.check_credentials()
    assert "MODAL_TOKEN_ID not set" not in str(caught.value)


def test_token_from_environment(modal_env, monkeypatch):
    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-test")
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-test")
    modal_target.check_credentials()


def test_token_from_active_profile(modal_env):
    write_profile(modal_env / "modal.toml", """
        [other]
        token_id = "ak-other"

        [work]
        token_id = "ak-work"
        token_secret = "as-work"
        active = true
    """)
    modal_target.check_credentials()


def test_profile_from_modal_profile(modal_env, monkeypatch):
    write_profile(modal_env / "modal.toml", """
        [work]
        token_id = "ak-work"
        token_secret = "as-work"
        active = true

        [empty]
        server_url = "http://127.0.0.1:1"
    """)
    monkeypatch.setenv("MODAL_PROFILE", "empty")
    with pytest.raises(TargetError, match="no Modal token"):
        modal_target.check_credentials()


def test_default_config_path_in_home(modal_env, monkeypatch):
    monkeypatch.delenv("MODAL_CONFIG_PATH")
    write_profile(modal_env / ".modal.toml", """
        [default]
        token_id = "ak-home"
        token_secret = "as-home"
    """)
    modal_target.check_credentials()


def test_broken_config_file_one_line(modal_env):
    (modal_env / "modal.toml").write_text("[default\ntoken_id = ", "utf-8")
    with pytest.raises(TargetError, match="cannot read the Modal config file") as caught:
        modal_target.check_credentials()
    assert "\n" not in str(caught.value)


def test_server_url_precedence(modal_env, monkeypatch):
    write_profile(modal_env / "modal.toml", """
        [default]
        server_url = "https://profile.example:8443"
    """)
    assert modal_target.server_url().startswith("http://127.0.0.1:")
    monkeypatch.delenv("MODAL_SERVER_URL")
    assert modal_target.server_url() == "https://profile.example:8443"
    (modal_env / "modal.toml").unlink()
    assert modal_target.server_url() == "https://api.modal.com"


def test_closed_port_one_line(modal_env):
    started = time.monotonic()
    with pytest.raises(TargetError) as caught:
        modal_target.check_reachable(3.0)
    message = str(caught.value)
    assert time.monotonic() - started < 10
    assert "\n" not in message
    assert "127.0.0.1:" in message
    assert "3 s" in message


def test_silent_tls_server_times_out(modal_env, monkeypatch, silent_listener):
    monkeypatch.setenv("MODAL_SERVER_URL", f"https://127.0.0.1:{silent_listener}")
    started = time.monotonic()
    with pytest.raises(TargetError, match="timed out") as caught:
        modal_target.check_reachable(1.0)
    elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 5
    assert f"127.0.0.1:{silent_listener} within 1 s" in str(caught.value)


def test_open_plain_port_reachable(modal_env, monkeypatch, silent_listener):
    monkeypatch.setenv("MODAL_SERVER_URL", f"http://127.0.0.1:{silent_listener}")
    modal_target.check_reachable(1.0)


def test_invalid_server_url(modal_env, monkeypatch):
    monkeypatch.setenv("MODAL_SERVER_URL", "not a url")
    with pytest.raises(TargetError, match="invalid Modal server URL"):
        modal_target.check_reachable(1.0)


@pytest.mark.parametrize("tag", ["", "has space", "x" * 51, "semi;colon"])
def test_invalid_tag_rejected(modal_env, tmp_path, tag):
    app_file = render_to_dir(DeploySpec(), tmp_path / "build")
    with pytest.raises(TargetError, match="invalid deployment tag"):
        modal_target.deploy(DeploySpec(), app_file, tag=tag)


def test_record_path_on_volume():
    assert modal_target.record_path(DeploySpec()) == "/.moondream_iac/applied/moondream.json"


@pytest.fixture
def restore_import_state(monkeypatch):
    """Undo the sys.path entry and the sys.modules entry that importing an app file adds."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    sys.modules.pop("modal_app", None)


def test_load_app_module_registers_stem(tmp_path, restore_import_state):
    app_file = render_to_dir(DeploySpec(), tmp_path / "build")
    module = modal_target.load_app_module(app_file)
    assert sys.modules["modal_app"] is module
    assert module.app.name == "moondream"
    assert module.weights_app.name == "moondream-weights"


def test_load_app_module_broken_file(tmp_path, restore_import_state):
    app_file = tmp_path / "modal_app.py"
    app_file.write_text("import modal\nraise RuntimeError('boom')\n", "utf-8")
    with pytest.raises(TargetError, match="importing the app file .* failed: boom"):
        modal_target.load_app_module(app_file)


# Runs in a fresh interpreter, as the CLI would: one SDK-backed call, its error on stdout.
CALL = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from moondream_iac.errors import TargetError
    from moondream_iac.render import render_to_dir
    from moondream_iac.spec.schema import DeploySpec
    from moondream_iac.targets import modal_target

    spec = DeploySpec()
    calls = {
        "deploy": lambda: modal_target.deploy(spec, render_to_dir(spec, Path("build")), tag="iac-test"),
        "read_record": lambda: modal_target.read_record(spec),
        "write_record": lambda: modal_target.write_record(spec, {"url": "x"}),
        "stop": lambda: modal_target.stop(spec),
        "sync_weights": lambda: modal_target.sync_weights(spec),
        "update_autoscaler": lambda: modal_target.update_autoscaler(spec),
        "rollback": lambda: modal_target.rollback(spec),
    }
    try:
        calls[sys.argv[1]]()
    except TargetError as error:
        print(error)
        sys.exit(3)
    """
)


def run_call(name: str, env: dict[str, str], cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    env = {**env, "PYTHONPATH": str(REPO_ROOT)}
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", CALL, name], capture_output=True, text=True,
                            env=env, cwd=cwd, timeout=60)
    return result, time.monotonic() - started


SDK_CALLS = ["deploy", "read_record", "write_record", "stop", "sync_weights",
             "update_autoscaler", "rollback"]


@pytest.mark.parametrize("name", SDK_CALLS)
def test_sdk_call_without_token(modal_env, name):
    result, elapsed = run_call(name, dict(os.environ), modal_env)
    assert result.returncode == 3, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    assert "modal setup" in lines[0]
    assert elapsed < 10


@pytest.mark.parametrize("name", ["deploy", "read_record", "stop"])
def test_sdk_call_without_route(modal_env, name):
    env = {**os.environ, "MODAL_TOKEN_ID": "ak-test", "MODAL_TOKEN_SECRET": "as-test"}
    result, elapsed = run_call(name, env, modal_env)
    assert result.returncode == 3, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    assert "cannot reach Modal at 127.0.0.1:" in lines[0]
    assert elapsed < 10

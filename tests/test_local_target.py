"""The local target over real server processes on 127.0.0.1, with weights synced from a fake hub."""

from __future__ import annotations

import base64
import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from moondream_iac.config.loader import load_config
from moondream_iac.errors import LockHeldError, TargetError
from moondream_iac.spec.schema import normalised, spec_hash
from moondream_iac.targets import local_process
from moondream_iac.targets.local import LocalTarget
from moondream_iac.testing.fake_hub import MOONDREAM_REPO, STARMIE_REPO, FakeHub, publish_moondream
from moondream_iac.weights.layout import WeightsLayout

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
KEY_ENV = "MDIAC_LOCAL_TEST_KEY"
KEY = "local-test-key-" + secrets.token_hex(12)
REVISION = "2025-06-21"


# Helpers


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_deploy(folder: Path, weights_dir: Path, *, port: int, auth_mode: str = "api_key",
                 queue_size: int = 32, app: str = "localtest"):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "deploy.yaml"
    path.write_text(textwrap.dedent(f"""\
        version: 1
        target: local
        app: {{name: {app}}}
        model: {{repo: {MOONDREAM_REPO}, revision: "{REVISION}"}}
        auth: {{mode: {auth_mode}, key_env: {KEY_ENV}}}
        server: {{queue_size: {queue_size}}}
        timeouts: {{startup: 120}}
        local: {{port: {port}, device: cpu, weights_dir: "{weights_dir}"}}
        """), encoding="utf-8")
    return load_config(path)


def png_data_url(width: int = 64, height: int = 48) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (30, 90, 200)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def state_files_text(target: LocalTarget) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in target.state_dir.rglob("*") if path.is_file()}


def process_gone(pid: int) -> bool:
    return local_process.process_start_token(pid) is None


def wait_for(condition, timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


# Fixtures


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch, FakeHub() as fake_hub:
        publish_moondream(fake_hub, tmp_path_factory.mktemp("hub-content"), filler_bytes=1024)
        patch.setenv("HF_ENDPOINT", fake_hub.url)
        patch.delenv("HF_HUB_OFFLINE", raising=False)
        patch.delenv("HF_TOKEN", raising=False)
        yield fake_hub


@pytest.fixture(scope="module")
def weights_dir(hub, tmp_path_factory) -> Path:
    """A weights root with 2025-06-21 synced through the local target itself."""
    root = tmp_path_factory.mktemp("weights")
    loaded = write_deploy(tmp_path_factory.mktemp("sync"), root, port=free_port())
    LocalTarget(loaded).sync_weights()
    return root


@pytest.fixture(scope="module")
def key_env():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_ENV, KEY)
        yield KEY


@pytest.fixture(scope="module")
def served(weights_dir, key_env, tmp_path_factory):
    """One deployed server with auth mode api_key, shared by the read-only tests."""
    loaded = write_deploy(tmp_path_factory.mktemp("served"), weights_dir, port=free_port())
    target = LocalTarget(loaded)
    outcome = target.deploy(tag="first")
    yield target, outcome
    target.destroy()


@pytest.fixture
def make_target(weights_dir, tmp_path):
    """Build targets on fresh ports in this test's folder; destroy them afterwards."""
    made: list[LocalTarget] = []

    def build(**options) -> LocalTarget:
        options.setdefault("port", free_port())
        target = LocalTarget(write_deploy(tmp_path / "project", weights_dir, **options))
        made.append(target)
        return target

    yield build
    for target in made:
        target.destroy()


# Weights


def test_sync_weights_writes_lock_beside_deploy(hub, tmp_path):
    loaded = write_deploy(tmp_path / "project", Path("relative-weights"), port=free_port())
    target = LocalTarget(loaded)

    lock = target.sync_weights()

    written = json.loads((tmp_path / "project" / "weights.lock").read_text())
    assert written["sha"] == lock["sha"]
    assert lock["repo"] == MOONDREAM_REPO
    assert lock["revision"] == REVISION
    layout = WeightsLayout(tmp_path / "project" / "relative-weights")
    assert layout.read_active(MOONDREAM_REPO).sha == lock["sha"]


def test_sync_weights_sends_hub_token(tmp_path, monkeypatch):
    token = "hf_" + secrets.token_hex(16)
    with FakeHub() as private_hub:
        publish_moondream(private_hub, tmp_path / "content", filler_bytes=1024)
        private_hub.require_token(MOONDREAM_REPO, token)
        private_hub.require_token(STARMIE_REPO, token)
        monkeypatch.setenv("HF_ENDPOINT", private_hub.url)
        monkeypatch.setenv("HF_TOKEN", token)
        target = LocalTarget(write_deploy(tmp_path / "project", tmp_path / "w", port=free_port()))

        lock = target.sync_weights()

    assert lock["sha"]
    assert token not in (tmp_path / "project" / "weights.lock").read_text()


# Deploy and serve


def test_deploy_reports_ready_health(served):
    target, outcome = served

    health = target.live_health()
    record = local_process.read_pid_file(target.pid_path)

    assert record.cmdline == local_process.server_command()
    assert outcome.url == f"http://127.0.0.1:{target.spec.local.port}/v1"
    assert health["status"] == "ready"
    assert health["spec_hash"] == spec_hash(target.spec)
    assert health["revision"] == REVISION
    assert health["auth_mode"] == "api_key"


def test_deploy_answers_client_request(served):
    import moondream
    from PIL import Image

    target, outcome = served
    client = moondream.vl(api_key=KEY, endpoint=outcome.url)

    result = client.point(Image.new("RGB", (64, 48), (200, 30, 30)), "button")

    assert len(result["points"]) >= 1
    assert 0.0 <= result["points"][0]["x"] <= 1.0


def test_deploy_rejects_request_without_key(served):
    _, outcome = served
    body = {"image_url": png_data_url(), "object": "button"}

    without_key = httpx.post(f"{outcome.url}/point", json=body, timeout=30)
    with_key = httpx.post(f"{outcome.url}/point", json=body, timeout=30,
                          headers={"X-Moondream-Auth": KEY})

    assert without_key.status_code == 401
    assert with_key.status_code == 200


def test_redeploy_same_spec_keeps_process(served):
    target, outcome = served

    again = target.deploy(tag="second")

    assert again.details["pid"] == outcome.details["pid"]
    assert again.details["restarted"] is False


def test_api_key_absent_from_files(served):
    target, outcome = served
    httpx.post(f"{outcome.url}/caption", json={"image_url": png_data_url()}, timeout=30,
               headers={"X-Moondream-Auth": KEY})
    target.write_record({"spec": normalised(target.spec), "url": outcome.url})

    files = state_files_text(target)
    cmdline = local_process.process_cmdline(outcome.details["pid"])

    assert {"server.pid", "server.log", "record.json"} <= set(files)
    for name, content in files.items():
        assert KEY.encode() not in content, name
    assert cmdline is not None
    assert not any(KEY in part for part in cmdline)


def test_status_reports_url_pid_health(served):
    target, outcome = served

    status = target.status()

    assert status["running"] is True
    assert status["url"] == outcome.url
    assert status["pid"] == outcome.details["pid"]
    assert status["health"]["status"] == "ready"


def test_stream_logs_yields_server_lines(served):
    target, _ = served

    lines = list(target.stream_logs())
    last = list(target.stream_logs(lines=2))

    assert any("the model is ready" in line for line in lines)
    assert last == lines[-2:]


def test_redeploy_after_spec_change_restarts(make_target, key_env):
    port = free_port()
    first = make_target(port=port, queue_size=32)
    first_outcome = first.deploy(tag="one")
    changed = make_target(port=port, queue_size=7)

    second_outcome = changed.deploy(tag="two")

    assert changed.state_dir == first.state_dir
    assert second_outcome.details["pid"] != first_outcome.details["pid"]
    assert second_outcome.details["restarted"] is True
    assert process_gone(first_outcome.details["pid"])
    health = changed.live_health()
    assert health["spec_hash"] == spec_hash(changed.spec)
    assert health["queue"]["size"] == 7


def test_redeploy_new_port_stops_old(make_target, key_env):
    first = make_target()
    first_outcome = first.deploy(tag="one")
    moved = make_target()

    moved_outcome = moved.deploy(tag="two")

    assert moved_outcome.url != first_outcome.url
    assert process_gone(first_outcome.details["pid"])
    assert moved.live_health()["status"] == "ready"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{first_outcome.url}/health", timeout=2)


def test_auth_none_serves_without_key(make_target, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    target = make_target(auth_mode="none")
    outcome = target.deploy(tag="open")
    body = {"image_url": png_data_url(), "object": "button"}

    response = httpx.post(f"{outcome.url}/point", json=body, timeout=30)
    environ = Path(f"/proc/{outcome.details['pid']}/environ").read_bytes()

    assert response.status_code == 200
    assert target.live_health()["auth_mode"] == "none"
    assert KEY.encode() not in environ


def test_rollback_restores_previous_spec(make_target, key_env):
    port = free_port()
    old = make_target(port=port, queue_size=11)
    new = make_target(port=port, queue_size=12)
    new.write_record({"record_version": 1, "spec": normalised(old.spec), "spec_hash": spec_hash(old.spec)})
    new.write_record({"record_version": 1, "spec": normalised(new.spec), "spec_hash": spec_hash(new.spec)})
    new.deploy(tag="new")

    new.rollback()

    health = new.live_health()
    assert health["spec_hash"] == spec_hash(old.spec)
    assert health["queue"]["size"] == 11
    assert new.read_record()["spec_hash"] == spec_hash(old.spec)


def test_rollback_without_previous_fails(make_target):
    target = make_target()

    with pytest.raises(TargetError, match="nothing to roll back to"):
        target.rollback()


def test_rollback_rejects_edited_previous(make_target):
    target = make_target()
    target.state_dir.mkdir(parents=True, exist_ok=True)
    target.previous_record_path.write_text(json.dumps({"record_version": 1, "spec": "x"}))

    with pytest.raises(TargetError) as caught:
        target.rollback()

    assert str(target.previous_record_path) in str(caught.value)
    assert "'spec' is a string" in str(caught.value)


def test_write_record_keeps_previous(make_target):
    target = make_target()

    def record(digest: str, applied_at: str) -> dict:
        return {"record_version": 1, "spec": {}, "spec_hash": digest, "applied_at": applied_at}

    target.write_record(record("a", "t1"))
    target.write_record(record("a", "t2"))
    target.write_record(record("b", "t3"))

    assert target.read_record() == record("b", "t3")
    previous = json.loads(target.previous_record_path.read_text())
    assert previous == record("a", "t2")


def test_destroy_stops_server(make_target, key_env):
    target = make_target()
    outcome = target.deploy(tag="doomed")

    target.destroy()

    assert process_gone(outcome.details["pid"])
    assert not target.pid_path.exists()
    assert target.live_health() is None
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{outcome.url}/health", timeout=2)


def test_update_autoscaler_is_noop(served):
    target, outcome = served

    target.update_autoscaler()

    assert target.status()["pid"] == outcome.details["pid"]


# Failures


def test_missing_api_key_variable_one_line(make_target, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    target = make_target()

    with pytest.raises(TargetError) as caught:
        target.deploy(tag="nokey")

    message = str(caught.value)
    assert "\n" not in message
    assert KEY_ENV in message
    assert not target.pid_path.exists()


def test_proxy_auth_rejected_locally(make_target):
    target = make_target(auth_mode="proxy")

    with pytest.raises(TargetError, match="auth.mode proxy"):
        target.preflight()


def test_port_in_use_fails_clearly(make_target, key_env):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        target = make_target(port=squatter.getsockname()[1])

        with pytest.raises(TargetError, match="in use by another program"):
            target.deploy(tag="busy")

    assert not target.pid_path.exists()


def test_failed_load_reports_log_lines(make_target, weights_dir, tmp_path, key_env):
    broken_root = tmp_path / "broken-weights"
    shutil.copytree(weights_dir, broken_root)
    layout = WeightsLayout(broken_root)
    weights_file = layout.active_model_dir(MOONDREAM_REPO) / "model.safetensors"
    content = bytearray(weights_file.read_bytes())
    content[-1] ^= 0xFF
    weights_file.write_bytes(bytes(content))
    target = LocalTarget(write_deploy(tmp_path / "broken", broken_root, port=free_port()))

    try:
        with pytest.raises(TargetError) as caught:
            target.deploy(tag="broken")
    finally:
        target.destroy()

    message = str(caught.value)
    assert "failed to load the model" in message
    assert "last lines of" in message
    assert "sha256" in message
    assert not target.pid_path.exists()


def test_exit_before_ready_shows_log(tmp_path):
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", "import sys; print('settings are invalid', file=sys.stderr); sys.exit(3)"],
            stdout=log, stderr=subprocess.STDOUT)

    with pytest.raises(TargetError) as caught:
        local_process.wait_until_ready(process, f"http://127.0.0.1:{free_port()}/v1", timeout_s=30,
                                       log_path=log_path, expected_spec_hash="abc")

    message = str(caught.value)
    assert "exited with code 3 before it was ready" in message
    assert "settings are invalid" in message


def test_not_ready_in_time_fails(tmp_path):
    log_path = tmp_path / "server.log"
    log_path.write_text("still loading\n")
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        with pytest.raises(TargetError) as caught:
            local_process.wait_until_ready(sleeper, f"http://127.0.0.1:{free_port()}/v1",
                                           timeout_s=1, log_path=log_path, expected_spec_hash="abc")
    finally:
        sleeper.kill()
        sleeper.wait()

    message = str(caught.value)
    assert "was not ready after 1 s" in message
    assert "still loading" in message


def test_missing_weights_named(tmp_path, key_env):
    target = LocalTarget(write_deploy(tmp_path / "empty", tmp_path / "no-weights", port=free_port()))

    with pytest.raises(TargetError, match="no synced weights for vikhyatk/moondream2@2025-06-21"):
        target.deploy(tag="empty")


def test_state_dir_default_names_environment(tmp_path, weights_dir):
    loaded = write_deploy(tmp_path, weights_dir, port=free_port())
    with open(loaded.path, "a", encoding="utf-8") as stream:
        stream.write("environments:\n  dev: {server: {queue_size: 3}}\n")

    base = LocalTarget(load_config(loaded.path))
    dev = LocalTarget(load_config(loaded.path, environment="dev"))

    assert base.state_dir == tmp_path / ".moondream_iac" / "local" / "localtest"
    assert dev.state_dir == tmp_path / ".moondream_iac" / "local" / "localtest-dev"


@pytest.mark.parametrize(("host", "url"), [
    ("127.0.0.1", "http://127.0.0.1:2020/v1"),
    ("0.0.0.0", "http://127.0.0.1:2020/v1"),
    ("::", "http://[::1]:2020/v1"),
    ("::1", "http://[::1]:2020/v1"),
    ("localhost", "http://localhost:2020/v1"),
])
def test_base_url_for_host(host, url):
    assert local_process.base_url(host, 2020) == url


# Pid file


def test_stale_pid_of_dead_process_removed(make_target):
    target = make_target()
    dead = subprocess.Popen(["sleep", "0"])
    dead.wait()
    record = local_process.PidRecord(
        pid=dead.pid, start_token="1", cmdline=local_process.server_command(), host="127.0.0.1",
        port=target.spec.local.port, spec_hash="x", model_sha="y", tag="t",
        started_at="2026-01-01T00:00:00Z", log_file=str(target.log_path),
    )
    local_process.write_pid_file(target.pid_path, record)

    assert target.live_health() is None
    assert not target.pid_path.exists()


@pytest.mark.parametrize("mismatch", ["start_token", "cmdline"])
def test_stale_pid_reused_not_signalled(make_target, mismatch):
    target = make_target()
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        token = local_process.process_start_token(bystander.pid)
        cmdline = local_process.process_cmdline(bystander.pid)
        if mismatch == "start_token":
            token = str(int(token) - 1)
        else:
            cmdline = local_process.server_command()
        record = local_process.PidRecord(
            pid=bystander.pid, start_token=token, cmdline=cmdline, host="127.0.0.1",
            port=target.spec.local.port, spec_hash="x", model_sha="y", tag="t",
            started_at="2026-01-01T00:00:00Z", log_file=str(target.log_path),
        )
        local_process.write_pid_file(target.pid_path, record)

        target.destroy()

        assert bystander.poll() is None
        assert not target.pid_path.exists()
        assert target.status()["running"] is False
    finally:
        bystander.kill()
        bystander.wait()


def wait_for_cmdline(pid: int, expected: list[str]) -> list[str]:
    assert wait_for(lambda: local_process.process_cmdline(pid) == expected, timeout_s=10)
    return expected


@pytest.mark.parametrize("foreground", [False, True])
def test_forged_pid_file_not_signalled(make_target, foreground):
    target = make_target()
    victim = subprocess.Popen(["setsid", "sleep", "300"])
    try:
        cmdline = wait_for_cmdline(victim.pid, ["sleep", "300"])
        record = local_process.PidRecord(
            pid=victim.pid, start_token=local_process.process_start_token(victim.pid),
            cmdline=cmdline, host="127.0.0.1", port=target.spec.local.port, spec_hash="x",
            model_sha="y", tag="t", started_at="2026-01-01T00:00:00Z",
            log_file=str(target.log_path), foreground=foreground, own_group=True,
        )
        local_process.write_pid_file(target.pid_path, record)

        target.destroy()

        assert victim.poll() is None
        assert not target.pid_path.exists()
    finally:
        victim.kill()
        victim.wait()


@pytest.mark.parametrize(("cmdline", "foreground", "expected"), [
    ([sys.executable, "-m", "moondream_iac.server"], False, True),
    (["/usr/bin/python3", "-m", "moondream_iac.server"], True, True),
    ([sys.executable, "-m", "moondream_iac", "apply", "--foreground"], True, True),
    ([sys.executable, "/venv/bin/moondream-iac", "apply", "--foreground", "-f", "d.yaml"], True, True),
    ([sys.executable, "-m", "moondream_iac", "apply", "--foreground"], False, False),
    ([sys.executable, "-m", "moondream_iac", "apply"], True, False),
    ([sys.executable, "-m", "moondream_iac.server", "--port", "1"], False, False),
    (["sleep", "300"], True, False),
    (["sleep", "300", "--foreground"], True, False),
    ([], True, False),
])
def test_server_cmdline_forms(cmdline, foreground, expected):
    assert local_process.is_server_cmdline(cmdline, foreground=foreground) is expected


def test_group_signalled_only_when_owned():
    leader = subprocess.Popen(["setsid", "sh", "-c", "sleep 300 & echo $!; wait"],
                              stdout=subprocess.PIPE, text=True)
    try:
        member = int(leader.stdout.readline())
        record = local_process.PidRecord(
            pid=leader.pid, start_token="1", cmdline=local_process.server_command(),
            host="127.0.0.1", port=1, spec_hash="x", model_sha="y", tag="t",
            started_at="2026-01-01T00:00:00Z", log_file="server.log", own_group=False,
        )

        local_process.stop_process(record, is_alive=lambda _: leader.poll() is None)

        assert leader.poll() is not None
        assert local_process.process_start_token(member) is not None
    finally:
        os.killpg(leader.pid, signal.SIGKILL)
        leader.wait()


def test_log_symlink_not_followed(tmp_path):
    outside = tmp_path / "outside.txt"
    log_path = tmp_path / "state" / "server.log"
    log_path.parent.mkdir()
    log_path.symlink_to(outside)

    with pytest.raises(TargetError) as caught:
        local_process.open_log(log_path)

    assert "symbolic link" in str(caught.value)
    assert str(log_path) in str(caught.value)
    assert not outside.exists()


def test_dangling_log_link_rotated_aside(tmp_path):
    outside = tmp_path / "outside.txt"
    log_path = tmp_path / "state" / "server.log"
    log_path.parent.mkdir()
    log_path.symlink_to(outside)
    env = {"PATH": os.environ.get("PATH", ""), "MOONDREAM_IAC_PORT": "not-a-port"}

    process = local_process.start_server(env=env, log_path=log_path, cwd=tmp_path)
    process.wait(timeout=60)

    assert not outside.exists()
    assert not log_path.is_symlink()
    assert log_path.is_file()
    assert (tmp_path / "state" / "server.log.1").is_symlink()


def test_log_tail_skips_symlink(tmp_path):
    secret_file = tmp_path / "other.txt"
    secret_file.write_text("private line\n")
    log_path = tmp_path / "server.log"
    log_path.symlink_to(secret_file)

    lines = local_process.log_tail(log_path)

    assert not any("private line" in line for line in lines)


def test_unreadable_pid_file_ignored(make_target):
    target = make_target()
    target.state_dir.mkdir(parents=True, exist_ok=True)
    target.pid_path.write_text("{not json")

    assert target.live_health() is None
    assert not target.pid_path.exists()


# Lock


def test_lock_held_names_holder(make_target):
    target = make_target()
    holder_script = textwrap.dedent(f"""\
        import sys, time
        from pathlib import Path
        from moondream_iac.config.loader import load_config
        from moondream_iac.targets.local import LocalTarget
        target = LocalTarget(load_config(Path({str(target.loaded.path)!r})))
        with target.lock("apply"):
            print("held", flush=True)
            sys.stdin.readline()
        """)
    holder = subprocess.Popen([sys.executable, "-c", holder_script], cwd=REPO_ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"

        with pytest.raises(LockHeldError) as caught:
            with target.lock("destroy"):
                pass
    finally:
        holder.communicate("\n", timeout=30)

    message = str(caught.value)
    assert f"pid {holder.pid}" in message
    assert "(apply)" in message
    assert "since 20" in message
    with target.lock("apply again"):
        assert target.lock_path.exists()


# Foreground


FOREGROUND_SCRIPT = """\
import sys
from pathlib import Path
if sys.argv[2] == "hub-imported":
    import huggingface_hub
from moondream_iac.config.loader import load_config
from moondream_iac.targets.local import LocalTarget
LocalTarget(load_config(Path(sys.argv[1]))).serve_foreground()
"""


@pytest.mark.parametrize("mode", ["in-process", "hub-imported"])
def test_serve_foreground_until_sigint(make_target, key_env, mode, tmp_path):
    target = make_target()
    # Run the script the way the `moondream-iac` console script runs, with --foreground,
    # because status and destroy trust only a pid file whose command line has that form.
    script = tmp_path / "bin" / "moondream-iac"
    script.parent.mkdir()
    script.write_text(FOREGROUND_SCRIPT)
    server = subprocess.Popen(
        [sys.executable, str(script), str(target.loaded.path), mode, "--foreground"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        ready = wait_for(lambda: (target.live_health() or {}).get("status") == "ready")
        status = target.status()

        server.send_signal(signal.SIGINT)
        code = server.wait(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    output = server.stdout.read().decode(errors="replace")

    assert ready, output
    assert status["pid"] == server.pid
    assert status["foreground"] is True
    assert code == 0, output
    assert target.status()["running"] is False
    assert not target.pid_path.exists()
    assert KEY not in output

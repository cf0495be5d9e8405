"""The weights step against a fake hub on 127.0.0.1: pinning, resume, repair, offline, faults."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from moondream_iac.errors import WeightsError
from moondream_iac.testing.fake_hub import MOONDREAM_REPO, STARMIE_REPO, FakeHub, publish_moondream
from moondream_iac.weights.layout import WeightsLayout
from moondream_iac.weights.lock import read_lock, verify_model_dir
from moondream_iac.weights.progress import QuietProgress
from moondream_iac.weights.sync import hold_sync_lock, sync_weights

REPO_ROOT = Path(__file__).resolve().parents[1]
FILLER = "filler.safetensors"


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("hub-content")
    with FakeHub() as hub:
        shas = publish_moondream(hub, workdir)
        yield hub, shas, workdir


@pytest.fixture
def hub(published, monkeypatch):
    fake_hub, _, _ = published
    fake_hub.reset_counts()
    fake_hub.bytes_per_second = None
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return fake_hub


@pytest.fixture
def shas(published):
    return published[1]


def sync(revision: str, root: Path, **options):
    options.setdefault("progress", QuietProgress())
    return sync_weights(MOONDREAM_REPO, revision, root, **options)


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_sync_pins_tag_to_commit(hub, shas, published, tmp_path):
    workdir = published[2]
    lock = sync("2025-04-14", tmp_path)

    layout = WeightsLayout(tmp_path)
    model_dir = layout.model_dir(MOONDREAM_REPO, lock.sha)
    assert lock.sha == shas[f"{MOONDREAM_REPO}@2025-04-14"]
    assert lock.revision == "2025-04-14"
    assert lock.files["model.safetensors"].sha256 == sha256_of(workdir / "moondream2-2025-04-14" / "model.safetensors")
    assert lock.files["model.safetensors"].hub_check == "lfs-sha256"
    assert lock.files["config.json"].hub_check == "git-blob-sha1"
    assert read_lock(layout.lock_path(MOONDREAM_REPO, lock.sha)) == lock
    assert layout.read_active(MOONDREAM_REPO).sha == lock.sha
    verify_model_dir(model_dir, layout.lock_path(MOONDREAM_REPO, lock.sha))


def test_sync_downloads_tokenizer_into_cache(hub, shas, tmp_path):
    lock = sync("2025-04-14", tmp_path)

    layout = WeightsLayout(tmp_path)
    tokenizer_sha = shas[f"{MOONDREAM_REPO}@2024-08-26"]
    assert lock.tokenizer.repo == MOONDREAM_REPO
    assert lock.tokenizer.revision == "2024-08-26"
    assert lock.tokenizer.sha == tokenizer_sha
    ref = layout.tokenizer_ref_path(MOONDREAM_REPO, "2024-08-26")
    assert ref.read_text() == tokenizer_sha
    assert (layout.tokenizer_snapshot_dir(MOONDREAM_REPO, tokenizer_sha) / "tokenizer.json").is_file()


def test_tokenizer_loads_offline_by_tag(hub, tmp_path):
    sync("2025-06-21", tmp_path)

    env = {**os.environ, **WeightsLayout(tmp_path).env(), "HF_ENDPOINT": closed_port_url()}
    code = (
        "from tokenizers import Tokenizer\n"
        f"tokenizer = Tokenizer.from_pretrained({STARMIE_REPO!r}, revision='2025-06-21')\n"
        "print(tokenizer.encode('a screen button').ids)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[1, 2, 3]"


def test_rerun_sends_no_request(hub, tmp_path):
    first = sync("2025-06-21", tmp_path)
    hub.reset_counts()

    second = sync("2025-06-21", tmp_path)

    assert hub.count() == 0
    assert second.sha == first.sha
    assert second.files == first.files


def test_rerun_by_commit_sha_sends_no_request(hub, shas, tmp_path, caplog):
    sha = shas[f"{MOONDREAM_REPO}@2025-06-21"]
    sync("2025-06-21", tmp_path)
    hub.reset_counts()

    with caplog.at_level(logging.WARNING, logger="moondream_iac.weights"):
        lock = sync(sha, tmp_path)

    assert hub.count() == 0
    assert lock.sha == sha
    assert "commit sha the revision table does not list" in caplog.text


def test_unknown_tag_lists_known_revisions(hub, tmp_path):
    with pytest.raises(WeightsError) as caught:
        sync("2025-13-01", tmp_path)

    message = str(caught.value)
    assert "unknown revision '2025-13-01'" in message
    assert "2024-03-04" in message
    assert "2025-06-21" in message
    assert hub.count() == 0


def test_tag_missing_on_hub_fails(hub, tmp_path):
    with pytest.raises(WeightsError) as caught:
        sync("2025-01-09", tmp_path)

    assert "revision 2025-01-09 not found in vikhyatk/moondream2" in str(caught.value)


def test_unknown_repo_fails(hub, tmp_path):
    with pytest.raises(WeightsError) as caught:
        sync_weights("nobody/nothing", "main", tmp_path, progress=QuietProgress())

    assert "repository nobody/nothing not found" in str(caught.value)


def test_dropped_connection_resumes_on_rerun(hub, shas, published, tmp_path):
    workdir = published[2]
    hub.drop_connection(MOONDREAM_REPO, FILLER, after_bytes=11 * 1024 * 1024)

    with pytest.raises(WeightsError) as caught:
        sync("2025-03-27", tmp_path, retries=0)
    assert "the next apply resumes it" in str(caught.value)
    assert WeightsLayout(tmp_path).read_active(MOONDREAM_REPO) is None

    hub.reset_counts()
    lock = sync("2025-03-27", tmp_path, retries=0)

    ranges = [record.range for record in hub.requests if record.method == "GET" and FILLER in record.path]
    assert ranges == [f"bytes={10 * 1024 * 1024}-"]
    expected = sha256_of(workdir / "moondream2-2025-03-27" / FILLER)
    assert lock.files[FILLER].sha256 == expected
    assert sha256_of(WeightsLayout(tmp_path).model_dir(MOONDREAM_REPO, lock.sha) / FILLER) == expected


def test_dropped_connection_retried_within_run(hub, tmp_path):
    hub.drop_connection(MOONDREAM_REPO, FILLER, after_bytes=11 * 1024 * 1024)

    lock = sync("2025-03-27", tmp_path)

    gets = [record for record in hub.requests if record.method == "GET" and FILLER in record.path]
    assert len(gets) == 2
    assert gets[1].range is not None
    verify_model_dir(WeightsLayout(tmp_path).model_dir(MOONDREAM_REPO, lock.sha),
                     WeightsLayout(tmp_path).lock_path(MOONDREAM_REPO, lock.sha))


def test_corrupt_bytes_from_hub_refetched(hub, tmp_path):
    hub.corrupt(MOONDREAM_REPO, "model.safetensors")

    lock = sync("2025-06-21", tmp_path)

    gets = hub.count("GET", "/model.safetensors")
    assert gets == 2
    layout = WeightsLayout(tmp_path)
    verify_model_dir(layout.model_dir(MOONDREAM_REPO, lock.sha), layout.lock_path(MOONDREAM_REPO, lock.sha))


def test_corrupted_file_caught_then_repaired(hub, tmp_path):
    lock = sync("2025-06-21", tmp_path)
    layout = WeightsLayout(tmp_path)
    model_dir = layout.model_dir(MOONDREAM_REPO, lock.sha)
    weights = model_dir / "model.safetensors"
    content = bytearray(weights.read_bytes())
    content[-1] ^= 0xFF
    weights.write_bytes(bytes(content))

    with pytest.raises(WeightsError) as caught:
        verify_model_dir(model_dir, layout.lock_path(MOONDREAM_REPO, lock.sha))
    assert str(weights) in str(caught.value)
    assert "sha256" in str(caught.value)
    assert "rerun `moondream-iac apply`" in str(caught.value)

    hub.reset_counts()
    sync("2025-06-21", tmp_path)
    assert hub.count("GET", "/resolve/") == 1
    assert hub.count("GET", "/model.safetensors") == 1
    verify_model_dir(model_dir, layout.lock_path(MOONDREAM_REPO, lock.sha))


def test_truncated_file_caught(hub, tmp_path):
    lock = sync("2025-06-21", tmp_path)
    layout = WeightsLayout(tmp_path)
    model_dir = layout.model_dir(MOONDREAM_REPO, lock.sha)
    weights = model_dir / "model.safetensors"
    size = weights.stat().st_size
    with weights.open("r+b") as stream:
        stream.truncate(size - 10)

    with pytest.raises(WeightsError) as caught:
        verify_model_dir(model_dir, layout.lock_path(MOONDREAM_REPO, lock.sha))
    assert f"has {size - 10} bytes, the lock expects {size}" in str(caught.value)


def test_missing_tokenizer_caught(hub, tmp_path):
    lock = sync("2025-06-21", tmp_path)
    layout = WeightsLayout(tmp_path)
    tokenizer = layout.tokenizer_snapshot_dir(STARMIE_REPO, lock.tokenizer.sha) / "tokenizer.json"
    tokenizer.unlink()

    with pytest.raises(WeightsError) as caught:
        verify_model_dir(layout.model_dir(MOONDREAM_REPO, lock.sha),
                         layout.lock_path(MOONDREAM_REPO, lock.sha))
    assert "tokenizer.json" in str(caught.value)
    assert "is missing" in str(caught.value)


def test_offline_complete_lock_needs_no_hub(hub, tmp_path, monkeypatch):
    first = sync("2025-06-21", tmp_path)
    monkeypatch.setenv("HF_ENDPOINT", closed_port_url())

    assert sync("2025-06-21", tmp_path) == first

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert sync("2025-06-21", tmp_path) == first


def test_offline_incomplete_fails_in_one_line(hub, tmp_path, monkeypatch):
    hub.drop_connection(MOONDREAM_REPO, FILLER, after_bytes=11 * 1024 * 1024)
    with pytest.raises(WeightsError):
        sync("2025-03-27", tmp_path, retries=0)
    unreachable = closed_port_url()
    monkeypatch.setenv("HF_ENDPOINT", unreachable)

    with pytest.raises(WeightsError) as caught:
        sync("2025-03-27", tmp_path)

    message = str(caught.value)
    assert "\n" not in message
    assert f"cannot reach the hub at {unreachable} (the connection was refused)" in message
    assert "has no complete, verified weights" in message
    assert "HF_ENDPOINT" in message


def test_offline_flag_without_weights_fails(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    with pytest.raises(WeightsError) as caught:
        sync("2025-06-21", tmp_path)

    assert "HF_HUB_OFFLINE is set" in str(caught.value)
    assert hub.count() == 0


def test_new_revision_switches_only_when_complete(hub, shas, tmp_path):
    old = sync("2025-06-21", tmp_path)
    layout = WeightsLayout(tmp_path)
    hub.drop_connection(MOONDREAM_REPO, FILLER, after_bytes=11 * 1024 * 1024)

    with pytest.raises(WeightsError):
        sync("2025-03-27", tmp_path, retries=0)
    assert layout.read_active(MOONDREAM_REPO).sha == old.sha

    new = sync("2025-03-27", tmp_path)
    assert layout.read_active(MOONDREAM_REPO).sha == new.sha
    assert new.sha == shas[f"{MOONDREAM_REPO}@2025-03-27"]
    verify_model_dir(layout.model_dir(MOONDREAM_REPO, old.sha), layout.lock_path(MOONDREAM_REPO, old.sha))

    hub.reset_counts()
    again = sync("2025-06-21", tmp_path)
    assert hub.count() == 0
    assert layout.read_active(MOONDREAM_REPO).sha == again.sha == old.sha


def test_lock_out_written_beside_config(hub, tmp_path):
    lock_out = tmp_path / "project" / "weights.lock"

    lock = sync("2025-06-21", tmp_path / "root", lock_out=lock_out)

    assert read_lock(lock_out) == lock
    data = json.loads(lock_out.read_text())
    assert list(data) == sorted(data)
    assert data["sha"] == lock.sha


def test_private_repo_token_sent_not_logged(hub, published, tmp_path, caplog):
    token = "hf_test_token_value_12345"
    hub.add_revision("private-org/model", "v1", published[2] / "starmie-2025-06-21")
    hub.require_token("private-org/model", token)

    with caplog.at_level(logging.DEBUG):
        with pytest.raises(WeightsError) as caught:
            sync_weights("private-org/model", "v1", tmp_path, progress=QuietProgress())
        assert "pass a token" in str(caught.value)

        lock = sync_weights("private-org/model", "v1", tmp_path, token=token, progress=QuietProgress())

    assert "tokenizer.json" in lock.files
    assert all(record.authorized for record in hub.requests[-2:])
    assert token not in caplog.text
    assert token not in lock.to_json()


def test_disk_full_names_path_and_size(hub, shas, tmp_path):
    from huggingface_hub._local_folder import get_local_download_paths

    sha = shas[f"{MOONDREAM_REPO}@2025-06-21"]
    layout = WeightsLayout(tmp_path)
    model_dir = layout.model_dir(MOONDREAM_REPO, sha)
    remote = hub.repos[MOONDREAM_REPO].commits[sha].files["model.safetensors"]
    partial = get_local_download_paths(model_dir, "model.safetensors").incomplete_path(remote.sha256)
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.symlink_to("/dev/full")

    with pytest.raises(WeightsError) as caught:
        sync("2025-06-21", tmp_path)

    message = str(caught.value)
    assert f"no space left on the device of {model_dir / 'model.safetensors'}" in message
    assert f"needs {remote.size} bytes" in message
    assert layout.read_active(MOONDREAM_REPO) is None


def test_permission_error_names_path(hub):
    root = Path("/sys/moondream-iac-weights-test")
    try:
        root.mkdir()
    except PermissionError:
        pass
    except OSError as error:
        pytest.skip(f"/sys gives {error.errno}, not a permission error, on this machine")
    else:
        root.rmdir()
        pytest.skip("/sys is writable on this machine")

    with pytest.raises(WeightsError) as caught:
        sync("2025-06-21", root)

    assert f"cannot write {root}" in str(caught.value)
    assert "make the weights folder writable" in str(caught.value)


def test_lock_timeout_names_holder(hub, tmp_path):
    holder = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from moondream_iac.weights.layout import WeightsLayout
        from moondream_iac.weights.sync import hold_sync_lock
        with hold_sync_lock(WeightsLayout(Path({str(tmp_path)!r})), "a/b", "v1", timeout_s=5):
            print("held", flush=True)
            sys.stdin.readline()
    """)
    process = subprocess.Popen([sys.executable, "-c", holder], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    try:
        assert process.stdout.readline().strip() == "held"
        with pytest.raises(WeightsError) as caught:
            sync("2025-06-21", tmp_path, lock_timeout_s=0.3)
    finally:
        process.communicate("\n", timeout=30)

    message = str(caught.value)
    assert f"pid {process.pid}" in message
    assert f"host {socket.gethostname()}" in message
    assert "syncing a/b@v1" in message
    assert hub.count() == 0

    with hold_sync_lock(WeightsLayout(tmp_path), "a/b", "v1", timeout_s=1):
        pass


def test_concurrent_syncs_end_consistent(hub, tmp_path):
    hub.bytes_per_second = 24 * 1024 * 1024
    code = textwrap.dedent(f"""
        import json, logging, sys
        from pathlib import Path
        from moondream_iac.weights.sync import sync_weights
        logging.basicConfig(level=logging.INFO)
        lock = sync_weights({MOONDREAM_REPO!r}, "2025-03-27", Path({str(tmp_path)!r}))
        print(json.dumps(lock.to_dict()["files"], sort_keys=True))
    """)
    env = {**os.environ, "HF_ENDPOINT": hub.url}
    processes = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT)
        for _ in range(2)
    ]
    results = [process.communicate(timeout=120) for process in processes]

    for process, (_, stderr) in zip(processes, results):
        assert process.returncode == 0, stderr
    assert results[0][0] == results[1][0]
    assert hub.count("GET", f"/{FILLER}") == 1
    assert hub.count("GET", "/model.safetensors") == 1
    assert any("nothing to download" in stderr for _, stderr in results)

    layout = WeightsLayout(tmp_path)
    active = layout.read_active(MOONDREAM_REPO)
    verify_model_dir(layout.model_dir(MOONDREAM_REPO, active.sha), layout.lock_path(MOONDREAM_REPO, active.sha))


def test_weights_job_returns_lock_dict(hub, published, tmp_path, monkeypatch):
    from moondream_iac.weights.remote import run_weights_job

    token = "hf_job_token_67890"
    hub.add_revision("job-org/model", "v1", published[2] / "starmie-2025-06-21")
    hub.require_token("job-org/model", token)
    monkeypatch.setenv("TEST_HUB_TOKEN", token)

    result = run_weights_job("job-org/model", "v1", str(tmp_path), token_env="TEST_HUB_TOKEN")

    assert result["repo"] == "job-org/model"
    assert result["sha"] == hub.repos["job-org/model"].refs["v1"]
    assert "tokenizer.json" in result["files"]
    assert token not in json.dumps(result)


def test_weights_job_missing_token_variable(hub, tmp_path, monkeypatch):
    from moondream_iac.weights.remote import run_weights_job

    monkeypatch.delenv("TEST_HUB_TOKEN_ABSENT", raising=False)

    with pytest.raises(WeightsError) as caught:
        run_weights_job(MOONDREAM_REPO, "2025-06-21", str(tmp_path), token_env="TEST_HUB_TOKEN_ABSENT")

    assert "TEST_HUB_TOKEN_ABSENT is empty or not set" in str(caught.value)
    assert hub.count() == 0


def test_progress_lines_when_not_a_terminal(hub, tmp_path):
    code = textwrap.dedent(f"""
        from pathlib import Path
        from moondream_iac.weights.sync import sync_weights
        sync_weights({MOONDREAM_REPO!r}, "2025-03-27", Path({str(tmp_path)!r}))
    """)
    env = {**os.environ, "HF_ENDPOINT": hub.url}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                            timeout=120, cwd=REPO_ROOT)

    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert any("vikhyatk/moondream2@2025-03-27: 12.0 MiB to download, 0 B already present" in line
               for line in lines), result.stderr
    assert any("vikhyatk/moondream2@2025-03-27: done, 12.0 MiB of 12.0 MiB (100%)" in line
               for line in lines), result.stderr
    assert "\x1b[" not in result.stderr


def test_branch_resolved_online_or_local_fallback(hub, published, tmp_path, monkeypatch, caplog):
    hub.add_revision("branch-org/model", "v1", published[2] / "starmie-2025-06-21")
    first = sync_weights("branch-org/model", "main", tmp_path, progress=QuietProgress())
    hub.reset_counts()

    again = sync_weights("branch-org/model", "main", tmp_path, progress=QuietProgress())
    assert hub.count("GET", "/api/models/branch-org/model/revision/main") == 1
    assert hub.file_downloads() == 0
    assert again.sha == first.sha

    monkeypatch.setenv("HF_ENDPOINT", closed_port_url())
    with caplog.at_level(logging.WARNING, logger="moondream_iac.weights"):
        offline = sync_weights("branch-org/model", "main", tmp_path, progress=QuietProgress())
    assert offline.sha == first.sha
    assert "which the hub may have moved since" in caplog.text

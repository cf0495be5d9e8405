"""The weights.lock beside deploy.yaml pins the weights: a moved tag or an edited lock fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moondream_iac.errors import WeightsError
from moondream_iac.testing.fake_hub import FakeHub
from moondream_iac.weights.layout import WeightsLayout
from moondream_iac.weights.progress import QuietProgress
from moondream_iac.weights.sync import sync_weights

REPO = "acme/pinned"


@pytest.fixture
def hub(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with FakeHub() as fake_hub:
        yield fake_hub


def publish(hub: FakeHub, tag: str, weights: bytes) -> str:
    return hub.add_files(REPO, tag, {"config.json": b'{"a": 1}\n', "model.safetensors": weights})


def sync(hub: FakeHub, tag: str, root: Path, lock_out: Path):
    return sync_weights(REPO, tag, root, endpoint=hub.url, lock_out=lock_out,
                        progress=QuietProgress())


def test_moved_tag_rejected(hub, tmp_path):
    lock_out = tmp_path / "weights.lock"
    first = publish(hub, "v1", b"first weights")
    sync(hub, "v1", tmp_path / "root-a", lock_out)
    committed = lock_out.read_bytes()

    moved = publish(hub, "v1", b"other weights")
    hub.reset_counts()
    with pytest.raises(WeightsError) as caught:
        sync(hub, "v1", tmp_path / "root-b", lock_out)

    message = str(caught.value)
    assert f"from commit {first}" in message
    assert f"to {moved}" in message
    assert str(lock_out) in message
    assert "delete" in message
    assert f"model.revision to {moved}" in message
    assert lock_out.read_bytes() == committed
    assert hub.file_downloads() == 0
    assert WeightsLayout(tmp_path / "root-b").read_active(REPO) is None


def test_unchanged_pin_is_noop(hub, tmp_path):
    lock_out = tmp_path / "weights.lock"
    sha = publish(hub, "v1", b"first weights")
    sync(hub, "v1", tmp_path / "root", lock_out)
    committed = lock_out.read_bytes()

    lock = sync(hub, "v1", tmp_path / "root", lock_out)
    assert lock.sha == sha
    assert lock_out.read_bytes() == committed

    fresh = sync(hub, "v1", tmp_path / "fresh-root", lock_out)
    assert fresh.sha == sha
    assert lock_out.read_bytes() == committed


def test_revision_change_replaces_lock(hub, tmp_path):
    lock_out = tmp_path / "weights.lock"
    publish(hub, "v1", b"first weights")
    second = publish(hub, "v2", b"second weights")
    sync(hub, "v1", tmp_path / "root", lock_out)

    sync(hub, "v2", tmp_path / "root", lock_out)

    written = json.loads(lock_out.read_text())
    assert written["revision"] == "v2"
    assert written["sha"] == second


def test_other_repo_lock_replaced(hub, tmp_path):
    lock_out = tmp_path / "weights.lock"
    sha = publish(hub, "v1", b"first weights")
    sync(hub, "v1", tmp_path / "root", lock_out)
    written = json.loads(lock_out.read_text())
    written["repo"] = "acme/other"
    lock_out.write_text(json.dumps(written))

    sync(hub, "v1", tmp_path / "root", lock_out)

    assert json.loads(lock_out.read_text())["repo"] == REPO
    assert json.loads(lock_out.read_text())["sha"] == sha


def test_edited_file_hash_rejected(hub, tmp_path):
    lock_out = tmp_path / "weights.lock"
    publish(hub, "v1", b"first weights")
    sync(hub, "v1", tmp_path / "root", lock_out)
    edited = json.loads(lock_out.read_text())
    edited["files"]["model.safetensors"]["sha256"] = "0" * 64
    lock_out.write_text(json.dumps(edited))

    for root in ("root", "fresh-root"):
        with pytest.raises(WeightsError) as caught:
            sync(hub, "v1", tmp_path / root, lock_out)
        assert "model.safetensors" in str(caught.value)
        assert "0" * 64 in str(caught.value)
        assert "restore" in str(caught.value)


def test_edited_hub_digest_rejected_before_download(hub, tmp_path):
    lock_out = tmp_path / "weights.lock"
    publish(hub, "v1", b"first weights")
    sync(hub, "v1", tmp_path / "root", lock_out)
    edited = json.loads(lock_out.read_text())
    edited["files"]["model.safetensors"]["hub_oid"] = "1" * 64
    lock_out.write_text(json.dumps(edited))
    hub.reset_counts()

    with pytest.raises(WeightsError) as caught:
        sync(hub, "v1", tmp_path / "fresh-root", lock_out)

    assert "model.safetensors" in str(caught.value)
    assert hub.file_downloads() == 0


def test_edited_sha_reads_as_moved_tag(hub, tmp_path):
    lock_out = tmp_path / "weights.lock"
    sha = publish(hub, "v1", b"first weights")
    sync(hub, "v1", tmp_path / "root", lock_out)
    edited = json.loads(lock_out.read_text())
    edited["sha"] = "2" * 40
    lock_out.write_text(json.dumps(edited))

    with pytest.raises(WeightsError) as caught:
        sync(hub, "v1", tmp_path / "root", lock_out)

    assert f"from commit {'2' * 40}" in str(caught.value)
    assert f"to {sha}" in str(caught.value)


@pytest.mark.parametrize("text", ["{not json", "[]", '{"format": 1}', '{"format": 1, "files": 3}'])
def test_malformed_lock_names_file(hub, tmp_path, text):
    lock_out = tmp_path / "weights.lock"
    publish(hub, "v1", b"first weights")
    lock_out.write_text(text)

    with pytest.raises(WeightsError) as caught:
        sync(hub, "v1", tmp_path / "root", lock_out)

    assert str(lock_out) in str(caught.value)
    assert "not a valid lock file" in str(caught.value)
    assert lock_out.read_text() == text


def test_offline_pinned_copy_needs_no_hub(hub, tmp_path, monkeypatch):
    lock_out = tmp_path / "weights.lock"
    sha = publish(hub, "v1", b"first weights")
    sync(hub, "v1", tmp_path / "root", lock_out)
    committed = lock_out.read_bytes()
    hub.reset_counts()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    lock = sync(hub, "v1", tmp_path / "root", lock_out)

    assert lock.sha == sha
    assert hub.count() == 0
    assert lock_out.read_bytes() == committed


def test_offline_edited_lock_rejected(hub, tmp_path, monkeypatch):
    lock_out = tmp_path / "weights.lock"
    publish(hub, "v1", b"first weights")
    sync(hub, "v1", tmp_path / "root", lock_out)
    edited = json.loads(lock_out.read_text())
    edited["files"]["config.json"]["sha256"] = "3" * 64
    lock_out.write_text(json.dumps(edited))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    with pytest.raises(WeightsError) as caught:
        sync(hub, "v1", tmp_path / "root", lock_out)

    assert "config.json" in str(caught.value)
    assert "3" * 64 in str(caught.value)

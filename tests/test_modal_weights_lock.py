"""ModalTarget.sync_weights writes the weights lock beside deploy.yaml for GitOps repositories.

Modal cannot be reached here, so the Modal call is replaced by what the rendered weights
function runs inside its container: run_weights_job, against a fake hub on 127.0.0.1.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moondream_iac.config.loader import load_config
from moondream_iac.errors import WeightsError
from moondream_iac.targets import modal_target
from moondream_iac.targets.modal import ModalTarget
from moondream_iac.testing.fake_hub import FakeHub, publish_moondream
from moondream_iac.weights.remote import run_weights_job


@pytest.fixture
def modal_target_on_fake_hub(tmp_path: Path, monkeypatch):
    """A ModalTarget whose weights function runs here, against a fake hub on 127.0.0.1."""
    deploy = tmp_path / "deploy.yaml"
    deploy.write_text("version: 1\n", encoding="utf-8")
    volume = tmp_path / "volume"

    def weights_function(spec, app_file=None, pinned=None):
        return run_weights_job(spec.model.repo, spec.model.revision, volume, pinned=pinned)

    with FakeHub() as hub:
        publish_moondream(hub, tmp_path / "hub", filler_bytes=1024)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setattr(modal_target, "sync_weights", weights_function)
        yield ModalTarget(load_config(deploy), build_dir=tmp_path / "build")


def test_lock_written_beside_deploy_file(tmp_path: Path, modal_target_on_fake_hub):
    lock = modal_target_on_fake_hub.sync_weights()

    written = json.loads((tmp_path / "weights.lock").read_text("utf-8"))
    assert written == lock
    assert written["revision"] == "2025-06-21"
    assert len(written["sha"]) == 40
    assert "model.safetensors" in written["files"]


def test_committed_lock_pins_modal_weights(tmp_path: Path, modal_target_on_fake_hub):
    modal_target_on_fake_hub.sync_weights()
    committed = json.loads((tmp_path / "weights.lock").read_text("utf-8"))
    edited = {**committed, "sha": "f" * 40}
    (tmp_path / "weights.lock").write_text(json.dumps(edited), encoding="utf-8")

    with pytest.raises(WeightsError) as caught:
        modal_target_on_fake_hub.sync_weights()

    message = str(caught.value)
    assert "weights.lock" in message
    assert committed["sha"] in message
    assert json.loads((tmp_path / "weights.lock").read_text("utf-8")) == edited

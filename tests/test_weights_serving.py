"""Synced weights load offline through the serving runtime, and the pinned tag decides the captions."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from moondream_iac.testing.fake_hub import MOONDREAM_REPO, FakeHub, publish_moondream
from moondream_iac.testing.tiny_model import write_tiny_model
from moondream_iac.weights.layout import WeightsLayout
from moondream_iac.weights.progress import QuietProgress
from moondream_iac.weights.sync import sync_weights

REPO_ROOT = Path(__file__).resolve().parents[1]

# Loads each (model folder, lock) pair given as JSON on argv with the runtime's
# load_model, and prints one caption per model as a JSON list.
LOAD_AND_CAPTION = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from PIL import Image
    from moondream_iac.server.model import load_model
    image = Image.new("RGB", (32, 24), (200, 40, 90))
    captions = []
    for model_dir, lock_file in json.loads(sys.argv[1]):
        lock = Path(lock_file) if lock_file else None
        model = load_model(Path(model_dir), dtype="float32", device="cpu", lock_file=lock)
        captions.append(model.caption(image, length="normal")["caption"])
    print(json.dumps(captions))
""")


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def caption_models(pairs: list[tuple[Path, Path | None]], env: dict[str, str]) -> list[str]:
    argument = json.dumps([[str(model_dir), str(lock) if lock else None] for model_dir, lock in pairs])
    result = subprocess.run([sys.executable, "-c", LOAD_AND_CAPTION, argument], env=env,
                            capture_output=True, text=True, timeout=180, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_pinned_tags_serve_their_weights(tmp_path):
    root = tmp_path / "root"
    with FakeHub() as hub:
        publish_moondream(hub, tmp_path / "hub", filler_bytes=1024)
        april = sync_weights(MOONDREAM_REPO, "2025-04-14", root, endpoint=hub.url, progress=QuietProgress())
        june = sync_weights(MOONDREAM_REPO, "2025-06-21", root, endpoint=hub.url, progress=QuietProgress())

    layout = WeightsLayout(root)
    assert layout.read_active(MOONDREAM_REPO).sha == june.sha
    reference_one = write_tiny_model(tmp_path / "reference-1", variant=1)
    reference_two = write_tiny_model(tmp_path / "reference-2", variant=2)

    # The hub is stopped and unreachable: the server process loads from the root only.
    env = {**os.environ, **layout.env(), "HF_ENDPOINT": closed_port_url()}
    captions = caption_models([
        (layout.model_dir(MOONDREAM_REPO, april.sha), layout.lock_path(MOONDREAM_REPO, april.sha)),
        (layout.model_dir(MOONDREAM_REPO, june.sha), layout.lock_path(MOONDREAM_REPO, june.sha)),
        (reference_one, None),
        (reference_two, None),
    ], env)

    april_caption, june_caption, variant_one, variant_two = captions
    assert april_caption != june_caption
    assert april_caption == variant_one
    assert june_caption == variant_two


@pytest.mark.slow
def test_runtime_rejects_corrupted_weights(tmp_path):
    root = tmp_path / "root"
    with FakeHub() as hub:
        publish_moondream(hub, tmp_path / "hub", filler_bytes=1024)
        lock = sync_weights(MOONDREAM_REPO, "2025-06-21", root, endpoint=hub.url, progress=QuietProgress())

    layout = WeightsLayout(root)
    weights = layout.model_dir(MOONDREAM_REPO, lock.sha) / "model.safetensors"
    content = bytearray(weights.read_bytes())
    content[len(content) // 2] ^= 0x01
    weights.write_bytes(bytes(content))

    code = textwrap.dedent(f"""
        from pathlib import Path
        from moondream_iac.errors import WeightsError
        from moondream_iac.server.model import load_model
        try:
            load_model(Path({str(weights.parent)!r}), dtype="float32", device="cpu",
                       lock_file=Path({str(layout.lock_path(MOONDREAM_REPO, lock.sha))!r}))
        except WeightsError as error:
            print("rejected:", error)
    """)
    env = {**os.environ, **layout.env()}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                            timeout=180, cwd=REPO_ROOT)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("rejected:")
    assert str(weights) in result.stdout

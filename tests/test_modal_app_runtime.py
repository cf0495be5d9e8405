"""Run the rendered app's own Python code, outside Modal, against real weights and HTTP.

The weights function runs through the SDK's ``.local()`` against a stand-in hub on
127.0.0.1. Then the GPU class's ``@modal.enter`` and ``@modal.asgi_app`` methods run on
the CPU, and uvicorn serves the app they return. A local folder replaces the Modal
volume (commit and reload have nothing to do there), so this checks the code in the
file, not Modal's containers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from moondream_iac.render import render_to_dir
from moondream_iac.render.context import revision_requirements, serve_environment
from moondream_iac.spec.schema import DeploySpec, spec_hash
from moondream_iac.testing.fake_hub import MOONDREAM_REPO, FakeHub, publish_moondream
from moondream_iac.testing.tiny_model import write_tiny_model
from moondream_iac.weights.layout import WeightsLayout

REPO_ROOT = Path(__file__).resolve().parent.parent
API_KEY = "md-render-test-3b9f0c"

IMPORT_APP = textwrap.dedent(
    """
    import importlib.util, json, sys, warnings

    warnings.simplefilter("ignore")
    module_spec = importlib.util.spec_from_file_location("modal_app", sys.argv[1])
    module = importlib.util.module_from_spec(module_spec)
    sys.modules["modal_app"] = module
    module_spec.loader.exec_module(module)


    class LocalVolume:
        # The volume is a local folder here: commit and reload have nothing to do.
        def commit(self):
            pass

        def reload(self):
            pass


    module.volume = LocalVolume()
    """
)

SYNC = IMPORT_APP + textwrap.dedent(
    """
    print(json.dumps(module.sync_weights.local()))
    """
)

SERVE = IMPORT_APP + textwrap.dedent(
    """
    import os, threading, time
    from io import BytesIO

    import httpx, uvicorn
    from PIL import Image
    from modal._utils.async_utils import synchronizer

    user_cls = module.Moondream._get_user_cls()
    instance = user_cls()
    for name in ("load", "web"):
        method = synchronizer._translate_in(user_cls.__dict__[name])
        setattr(instance, "_" + name, method.raw_f.__get__(instance))
    instance._load()
    asgi = instance._web()

    server = uvicorn.Server(uvicorn.Config(asgi, host="127.0.0.1", port=0, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}/v1"

    buffer = BytesIO()
    Image.new("RGB", (32, 24), (200, 40, 90)).save(buffer, format="PNG")
    import base64
    image_url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    body = {"image_url": image_url, "length": "normal"}
    key = os.environ[os.environ["MOONDREAM_IAC_API_KEY_ENV"]]
    with httpx.Client(timeout=30) as client:
        health = client.get(f"{base}/health", headers={"X-Moondream-Auth": key})
        caption = client.post(f"{base}/caption", json=body, headers={"X-Moondream-Auth": key})
        anonymous = client.post(f"{base}/caption", json=body)
    server.should_exit = True
    thread.join(timeout=10)
    print(json.dumps({
        "health": health.json(),
        "caption_status": caption.status_code,
        "caption": caption.json().get("caption"),
        "anonymous_status": anonymous.status_code,
    }))
    """
)


def run_script(script: str, app_file: Path, env: dict[str, str]) -> dict:
    env = {**env, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, "-c", script, str(app_file)], env=env,
                            capture_output=True, text=True, timeout=180, cwd=app_file.parent)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def base_env(tmp_path: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("MODAL_", "HF_", "MOONDREAM_IAC_", "TRANSFORMERS_"))}
    env["HOME"] = str(tmp_path)
    return env


@pytest.mark.slow
def test_rendered_app_syncs_and_serves(tmp_path):
    root = tmp_path / "volume"
    spec = DeploySpec.model_validate({"volume": {"mount_path": str(root)}})
    app_file = render_to_dir(spec, tmp_path / "build")
    layout = WeightsLayout(root)

    with FakeHub() as hub:
        publish_moondream(hub, tmp_path / "hub", filler_bytes=1024)
        sync_env = {**base_env(tmp_path), **layout.env(offline=False), "HF_ENDPOINT": hub.url}
        lock = run_script(SYNC, app_file, sync_env)

    assert lock["repo"] == MOONDREAM_REPO
    assert lock["revision"] == "2025-06-21"
    assert layout.read_active(MOONDREAM_REPO).sha == lock["sha"]

    serve_env = {
        **base_env(tmp_path),
        **serve_environment(spec, revision_requirements(spec.model.repo, spec.model.revision)),
        "MOONDREAM_IAC_DEVICE": "cpu",
        "MOONDREAM_IAC_DTYPE": "float32",
        spec.auth.key_env: API_KEY,
    }
    seen = run_script(SERVE, app_file, serve_env)

    # publish_moondream serves tiny model variant 2 as 2025-06-21.
    reference = run_script(
        textwrap.dedent("""
            import json, sys
            from PIL import Image
            from moondream_iac.server.model import load_model
            model = load_model(sys.argv[1], dtype="float32", device="cpu")
            image = Image.new("RGB", (32, 24), (200, 40, 90))
            print(json.dumps(model.caption(image, length="normal")))
        """),
        write_tiny_model(tmp_path / "reference", variant=2),
        base_env(tmp_path),
    )
    assert seen["caption_status"] == 200
    assert seen["caption"] == reference["caption"]
    assert seen["anonymous_status"] == 401
    assert seen["health"]["spec_hash"] == spec_hash(spec)
    assert seen["health"]["ready"] is True


@pytest.mark.slow
def test_rendered_app_refuses_other_revision(tmp_path):
    root = tmp_path / "volume"
    synced = DeploySpec.model_validate({"volume": {"mount_path": str(root)},
                                        "model": {"revision": "2025-04-14"}})
    pinned = DeploySpec.model_validate({"volume": {"mount_path": str(root)}})
    layout = WeightsLayout(root)

    with FakeHub() as hub:
        publish_moondream(hub, tmp_path / "hub", filler_bytes=1024)
        sync_env = {**base_env(tmp_path), **layout.env(offline=False), "HF_ENDPOINT": hub.url}
        run_script(SYNC, render_to_dir(synced, tmp_path / "synced"), sync_env)

    check = IMPORT_APP + textwrap.dedent("""
        try:
            module.load_served_model()
        except RuntimeError as error:
            print(json.dumps({"error": str(error)}))
    """)
    seen = run_script(check, render_to_dir(pinned, tmp_path / "pinned"), base_env(tmp_path))
    assert "holds vikhyatk/moondream2@2025-04-14" in seen["error"]
    assert "pins 2025-06-21" in seen["error"]

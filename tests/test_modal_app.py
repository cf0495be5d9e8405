"""Import rendered app files with the real modal package, offline and with no credentials.

Each import runs in a subprocess (so modal's module state does not leak between specs)
that prints what the SDK built: the GPU class's FunctionInfo, its autoscaler settings
and web endpoint, and the weights function. The test compares those with the spec.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from moondream_iac.render import render_to_dir
from moondream_iac.render.context import SERVE_CLASS, WEIGHTS_TIMEOUT_S
from moondream_iac.spec.schema import DeploySpec

REPO_ROOT = Path(__file__).resolve().parent.parent
GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
SPEC_FILES = [REPO_ROOT / "deploy.yaml", *sorted(GOLDEN_DIR.glob("*.yaml"))]

# Runs in the subprocess: import the app file and print what modal 1.6.4 recorded.
# FunctionInfo covers GPUs, timeouts, volumes, secrets, concurrency and proxy auth. The
# autoscaler settings and the web label exist only in the closure of the function's
# loader, so the probe reads them as private state of the pinned SDK version (1.6.4).
PROBE = textwrap.dedent(
    """
    import importlib.util, json, re, sys

    path, class_name = sys.argv[1], sys.argv[2]
    module_spec = importlib.util.spec_from_file_location("rendered_app", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)

    from modal._utils.async_utils import synchronizer

    def closure_of(load):
        cells = [cell.cell_contents for cell in load.__closure__]
        return dict(zip(load.__code__.co_freevars, cells))

    def closure(function):
        return closure_of(synchronizer._translate_in(function)._load)

    def secret_names(info):
        return [re.fullmatch(r"modal\\.Secret\\.from_name\\('(.*)'\\)", text).group(1)
                for text in info.secrets]

    def required_keys(function):
        keys = {}
        for secret in synchronizer._translate_in(function)._spec.secrets:
            cells = closure_of(secret._load)
            keys[cells["name"]] = cells["required_keys"]
        return keys

    def volumes(info):
        return {path: mount.name for path, mount in info.volumes.items()}

    def mounted_files(image):
        base, mount = synchronizer._translate_in(image)._deps()
        return sorted(str(remote) for entry in mount._entries
                      for _, remote in entry.get_files_to_upload())

    service = getattr(module, class_name)._get_class_service_function()
    info = service.info()
    cells = closure(service)
    scaling = cells["autoscaler_settings"]
    (method_name, method), = cells["method_definitions"].items()
    web = method.webhook_config

    weights = module.sync_weights
    weights_info = weights.info()

    print(json.dumps({
        "app": module.app.name,
        "weights_app": module.weights_app.name,
        "gpus": [[name, count] for name, count in info.gpus],
        "timeout": info.timeout,
        "startup_timeout": info.startup_timeout,
        "regions": info.regions,
        "cloud": info.cloud,
        "volumes": volumes(info),
        "secrets": secret_names(info),
        "required_keys": required_keys(service),
        "max_inputs": info.concurrency_info.max_inputs,
        "target_inputs": info.concurrency_info.target_inputs,
        "autoscaler": {
            "min_containers": scaling.min_containers,
            "max_containers": scaling.max_containers if scaling.HasField("max_containers") else None,
            "buffer_containers": scaling.buffer_containers,
            "scaledown_window": scaling.scaledown_window,
        },
        "method": method_name,
        "label": web.requested_suffix,
        "requires_proxy_auth": web.requires_proxy_auth,
        "unauthenticated": info.method_details[method_name].unauthenticated,
        "weights_volumes": volumes(weights_info),
        "weights_secrets": secret_names(weights_info),
        "weights_required_keys": required_keys(weights),
        "weights_timeout": weights_info.timeout,
        "weights_gpus": weights_info.gpus,
        "serve_files": mounted_files(module.serve_image),
        "weights_files": mounted_files(module.weights_image),
    }))
    """
)


def offline_env(home: Path) -> dict[str, str]:
    """Return an environment with no Modal token: no variables, an empty HOME and config."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MODAL_")}
    env["HOME"] = str(home)
    env["MODAL_CONFIG_PATH"] = str(home / "no-modal.toml")
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


def probe_app(app_file: Path, home: Path) -> dict:
    result = subprocess.run(
        # Warnings are errors: modal 1.x reports deprecated options as warnings first.
        [sys.executable, "-W", "error", "-c", PROBE, str(app_file), SERVE_CLASS],
        capture_output=True, text=True, env=offline_env(home), cwd=home, timeout=120,
    )
    assert result.returncode == 0, f"importing {app_file} failed:\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def expected_gpus(spec: DeploySpec) -> list[list]:
    return [[name, spec.gpu.count] for name in (spec.gpu.type, *spec.gpu.fallbacks)]


@pytest.fixture(scope="module", params=SPEC_FILES, ids=lambda path: path.stem)
def imported(request, tmp_path_factory):
    spec = DeploySpec.model_validate(yaml.safe_load(request.param.read_text("utf-8")))
    folder = tmp_path_factory.mktemp("app")
    app_file = render_to_dir(spec, folder / "build")
    return spec, probe_app(app_file, folder)


def test_app_names(imported):
    spec, seen = imported
    assert seen["app"] == spec.app.name
    assert seen["weights_app"] == spec.app.name + "-weights"


def test_gpu_list(imported):
    spec, seen = imported
    assert seen["gpus"] == expected_gpus(spec)


def test_timeouts(imported):
    spec, seen = imported
    assert seen["timeout"] == spec.timeouts.request
    assert seen["startup_timeout"] == spec.timeouts.startup


def test_volume_mount(imported):
    spec, seen = imported
    assert seen["volumes"] == {spec.volume.mount_path: spec.volume.name}


def test_secret_names(imported):
    spec, seen = imported
    assert seen["secrets"] == spec.modal_secret_names()


def test_secret_required_keys(imported):
    spec, seen = imported
    for name, keys in seen["required_keys"].items():
        expected = []
        if spec.auth.mode == "api_key" and name == spec.auth.secret:
            expected.append(spec.auth.key_env)
        if name == spec.model.hub_token_secret:
            expected.append("HF_TOKEN")
        assert keys == expected, name


def test_concurrency(imported):
    spec, seen = imported
    assert seen["max_inputs"] == spec.concurrency.max_inputs
    assert seen["target_inputs"] == spec.concurrency.target_inputs


def test_autoscaler(imported):
    spec, seen = imported
    scaling = spec.autoscaling
    assert seen["autoscaler"] == {
        "min_containers": scaling.min_containers,
        "max_containers": scaling.max_containers,
        "buffer_containers": scaling.buffer_containers,
        "scaledown_window": scaling.scaledown_window,
    }


def test_placement(imported):
    spec, seen = imported
    assert seen["regions"] == (list(spec.placement.region) or None)
    assert seen["cloud"] == spec.placement.cloud


def test_web_endpoint(imported):
    spec, seen = imported
    proxy = spec.auth.mode == "proxy"
    assert seen["method"] == "web"
    assert seen["label"] == spec.app.label
    assert seen["requires_proxy_auth"] is proxy
    assert seen["unauthenticated"] is not proxy


def test_weights_function(imported):
    spec, seen = imported
    assert seen["weights_volumes"] == {spec.volume.mount_path: spec.volume.name}
    hub = [spec.model.hub_token_secret] if spec.model.hub_token_secret else []
    assert seen["weights_secrets"] == hub
    assert seen["weights_required_keys"] == {name: ["HF_TOKEN"] for name in hub}
    assert seen["weights_timeout"] == WEIGHTS_TIMEOUT_S
    assert seen["weights_gpus"] == []


def test_images_ship_package_data(imported):
    _, seen = imported
    for key in ("serve_files", "weights_files"):
        assert "/root/moondream_iac/data/revisions.yaml" in seen[key]
        assert "/root/moondream_iac/weights/remote.py" in seen[key]
        assert "/root/moondream_iac/server/app.py" in seen[key]
        assert not [name for name in seen[key] if "__pycache__" in name]


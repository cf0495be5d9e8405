"""Build the values the app template needs from a DeploySpec.

Everything the template prints comes from here. Values taken from the spec stay plain
data (str, int, list, dict), and the template writes them only through the ``py``
filter. The names of Modal options are fixed strings of this module.
"""

from __future__ import annotations

from typing import Any

from moondream_iac.spec.runtime_env import runtime_settings
from moondream_iac.spec.schema import DeploySpec, spec_hash
from moondream_iac.weights.layout import WeightsLayout
from moondream_iac.weights.revisions import RevisionInfo, revision_requirements

# Names inside the rendered file that the Modal target looks up after a deploy.
SERVE_CLASS = "Moondream"
WEB_METHOD = "web"
WEIGHTS_FUNCTION = "sync_weights"
WEIGHTS_APP_SUFFIX = "-weights"
SOURCE_PACKAGE = "moondream_iac"
# Files of the package left out of the image. Modal's default would leave out every
# non-Python file, and with it the revision table in moondream_iac/data.
SOURCE_IGNORE = ["**/__pycache__", "**/*.pyc", "**/.*"]

# Seconds the weights step may take: a first download of Moondream 2 moves about
# 3.9 GB from the hub and hashes every file.
WEIGHTS_TIMEOUT_S = 3600
# The variable Modal sets from the hub token secret; huggingface_hub reads it.
HUB_TOKEN_ENV = "HF_TOKEN"
# Packages of the serving runtime itself, besides the revision's model-code pins. These
# are the versions this package's tests run with.
RUNTIME_PINS = (
    "fastapi==0.165.0",
    "uvicorn==0.55.0",
    "pydantic==2.14.4",
    "huggingface_hub==0.36.2",
    "safetensors==0.8.0",
    "packaging==26.4",
    "filelock==4.3.2",
    "pyyaml==6.0.4",
)


def build_context(spec: DeploySpec, tool_version: str) -> dict[str, Any]:
    """Return the template variables for ``spec``."""
    revision = revision_requirements(spec.model.repo, spec.model.revision)
    mount = spec.volume.mount_path
    return {
        "tool_version": tool_version,
        "spec_hash": spec_hash(spec),
        "app_name": spec.app.name,
        "weights_app_name": spec.app.name + WEIGHTS_APP_SUFFIX,
        "environment": spec.app.environment,
        "python_version": spec.app.python_version,
        "apt_packages": list(revision.apt),
        "pip_packages": _pip_packages(revision),
        "serve_env": serve_environment(spec, revision),
        "weights_env": WeightsLayout(mount).env(offline=False),
        "volume_name": spec.volume.name,
        "mount_path": mount,
        "model_repo": spec.model.repo,
        "model_revision": spec.model.revision,
        "hub_secret": spec.model.hub_token_secret,
        "hub_token_env": HUB_TOKEN_ENV if spec.model.hub_token_secret else None,
        "weights_timeout": WEIGHTS_TIMEOUT_S,
        "secrets": _secret_references(spec),
        "cls_options": _cls_options(spec),
        "concurrency_options": _concurrency_options(spec),
        "label": spec.app.label,
        "proxy_auth": spec.auth.mode == "proxy",
        "serve_class": SERVE_CLASS,
        "web_method": WEB_METHOD,
        "weights_function": WEIGHTS_FUNCTION,
        "source_package": SOURCE_PACKAGE,
        "source_ignore": SOURCE_IGNORE,
    }


def serve_environment(spec: DeploySpec, revision: RevisionInfo) -> dict[str, str]:
    """Return the image environment of the serving class: hub paths and runtime settings.

    The spec hash is not part of it, so that a change of autoscaler settings alone does
    not change the image. The app passes the hash to the settings at container start.
    """
    env = WeightsLayout(spec.volume.mount_path).env(offline=True)
    env.update(runtime_settings(spec, revision, dtype=spec.model.dtype, device="cuda"))
    return env


def _pip_packages(revision: RevisionInfo) -> list[str]:
    pinned = {_distribution(pin) for pin in revision.pip}
    extra = [pin for pin in RUNTIME_PINS if _distribution(pin) not in pinned]
    return [*revision.pip, *extra]


def _distribution(pin: str) -> str:
    return pin.split("==")[0].strip().lower().replace("_", "-")


def _secret_references(spec: DeploySpec) -> list[dict[str, Any]]:
    """Return one entry per secret: its name and the keys Modal must find in it."""
    references = []
    for name in spec.modal_secret_names():
        required: list[str] = []
        if spec.auth.mode == "api_key" and name == spec.auth.secret:
            required.append(spec.auth.key_env)
        if name == spec.model.hub_token_secret:
            required.append(HUB_TOKEN_ENV)
        references.append({"name": name, "required_keys": required})
    return references


def _cls_options(spec: DeploySpec) -> list[tuple[str, Any]]:
    """Return the ``@app.cls`` keyword arguments after image, volumes and secrets.

    Options whose value equals Modal's own default are left out, so the file shows only
    what the spec sets.
    """
    scaling = spec.autoscaling
    options: list[tuple[str, Any]] = [
        ("gpu", spec.gpu.modal_value()),
        ("timeout", spec.timeouts.request),
        ("startup_timeout", spec.timeouts.startup),
        ("scaledown_window", scaling.scaledown_window),
    ]
    if scaling.min_containers:
        options.append(("min_containers", scaling.min_containers))
    if scaling.max_containers is not None:
        options.append(("max_containers", scaling.max_containers))
    if scaling.buffer_containers:
        options.append(("buffer_containers", scaling.buffer_containers))
    if spec.placement.region:
        options.append(("region", list(spec.placement.region)))
    if spec.placement.cloud is not None:
        options.append(("cloud", spec.placement.cloud))
    return options


def _concurrency_options(spec: DeploySpec) -> list[tuple[str, Any]]:
    options: list[tuple[str, Any]] = [("max_inputs", spec.concurrency.max_inputs)]
    if spec.concurrency.target_inputs is not None:
        options.append(("target_inputs", spec.concurrency.target_inputs))
    return options

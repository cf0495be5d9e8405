"""Load a Moondream model directory with transformers and accelerate, with the hub offline.

The download happens once, in the weights step, and serving must never reach the hub. So
``load_model`` sets ``HF_HUB_OFFLINE=1`` before it imports transformers and passes
``local_files_only=True``. huggingface_hub reads ``HF_HUB_OFFLINE`` once, at import
time: when transformers was imported earlier in the process without it,
``local_files_only`` alone keeps the load offline.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from moondream_iac.errors import IacError

logger = logging.getLogger(__name__)

# transformers 5 does not run the 2025 Moondream model code: HfMoondream never calls
# post_init(), and non-persistent buffers come out uninitialised. The vendor's own
# server pins transformers<5.
DEFAULT_TRANSFORMERS_RANGE = "<5"
DTYPE_NAMES = ("bfloat16", "float16", "float32")


class ModelLoadError(IacError):
    """The model directory cannot be loaded: wrong runtime, missing files, bad weights."""


def check_runtime_requirements(
    transformers_range: str | None, *, installed_version: str | None = None
) -> None:
    """Raise ModelLoadError unless the installed transformers satisfies the range.

    ``transformers_range`` is a PEP 440 specifier such as ``">=4.51,<5"``, from the
    revision table; None means ``"<5"``, the limit every supported revision shares.
    ``installed_version`` defaults to the installed distribution's version.
    """
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import Version

    wanted = transformers_range or DEFAULT_TRANSFORMERS_RANGE
    try:
        specifier = SpecifierSet(wanted)
    except InvalidSpecifier:
        raise ModelLoadError(
            f"invalid transformers version range {wanted!r}: expected a PEP 440 "
            "specifier such as '>=4.51,<5'"
        ) from None

    if installed_version is None:
        try:
            installed_version = metadata.version("transformers")
        except metadata.PackageNotFoundError:
            raise ModelLoadError(
                f"transformers is not installed; install it with: pip install 'transformers{specifier}'"
            ) from None

    if Version(installed_version) in specifier:
        return
    reason = ""
    if Version(installed_version).major >= 5:
        reason = " (transformers 5 breaks the Moondream model code loaded with trust_remote_code)"
    raise ModelLoadError(
        f"transformers {installed_version} is installed, but this model needs "
        f"transformers{specifier}{reason}; install it with: pip install 'transformers{specifier}'"
    )


def load_model(
    model_dir: Path,
    *,
    dtype: str = "auto",
    device: str = "auto",
    lock_file: Path | None = None,
    transformers_range: str | None = None,
) -> Any:
    """Load the model in ``model_dir`` for inference and return it.

    ``dtype`` is ``auto`` (bfloat16 on CUDA, float32 otherwise), ``bfloat16``,
    ``float16`` or ``float32``. ``device`` is ``auto`` (CUDA when available), ``cpu``,
    ``cuda`` or ``cuda:N``. With ``lock_file``, every file is checked against the lock
    before loading. Raises ModelLoadError, or WeightsError for a lock mismatch.
    """
    model_dir = Path(model_dir)
    check_runtime_requirements(transformers_range)
    if not (model_dir / "config.json").is_file():
        raise ModelLoadError(
            f"{model_dir} has no config.json: it is not a model directory in Hugging Face "
            "format; run the weights step first or fix the model directory setting"
        )
    if lock_file is not None:
        _verify_lock(model_dir, Path(lock_file))

    _set_hub_offline()
    import torch
    from transformers import AutoModelForCausalLM

    resolved_device = resolve_device(device)
    torch_dtype = getattr(torch, resolve_dtype(dtype, resolved_device))
    started = time.perf_counter()
    try:
        model = AutoModelForCausalLM.from_pretrained(
            model_dir,
            trust_remote_code=True,
            local_files_only=True,
            device_map={"": resolved_device},
            **_dtype_argument(torch_dtype),
        )
    except Exception as error:  # noqa: BLE001 - remote model code and safetensors raise many types
        raise ModelLoadError(
            f"failed to load the model in {model_dir}: {type(error).__name__}: {error}"
        ) from error

    model.eval()
    logger.info(
        "loaded model from %s on %s as %s in %.2f s",
        model_dir, resolved_device, torch_dtype, time.perf_counter() - started,
    )
    return model


def resolve_device(device: str) -> str:
    """Return ``device``, with ``auto`` replaced by ``cuda`` when CUDA is available, else ``cpu``."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str, device: str) -> str:
    """Return the torch dtype name for ``dtype``: ``auto`` is bfloat16 on CUDA, float32 elsewhere."""
    if dtype == "auto":
        return "bfloat16" if device.startswith("cuda") else "float32"
    if dtype not in DTYPE_NAMES:
        raise ModelLoadError(
            f"invalid dtype {dtype!r}: expected auto, {', '.join(DTYPE_NAMES)}"
        )
    return dtype


def _dtype_argument(torch_dtype: Any) -> dict[str, Any]:
    # transformers 4.56 renamed from_pretrained's torch_dtype argument to dtype.
    from packaging.version import Version

    if Version(metadata.version("transformers")) >= Version("4.56"):
        return {"dtype": torch_dtype}
    return {"torch_dtype": torch_dtype}


def _set_hub_offline() -> None:
    if "huggingface_hub" in sys.modules or "transformers" in sys.modules:
        return
    os.environ["HF_HUB_OFFLINE"] = "1"


def _verify_lock(model_dir: Path, lock_file: Path) -> None:
    # Imported here: the weights package is needed only when a lock file is given.
    from moondream_iac.weights.lock import verify_model_dir

    verify_model_dir(model_dir, lock_file)

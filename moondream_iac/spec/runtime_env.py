"""The server settings a spec implies, as the MOONDREAM_IAC_* variables the runtime reads.

The rendered Modal app and the local target both configure the same runtime this way;
each adds the settings only it has (the model folder, the host and port, the spec hash).
"""

from __future__ import annotations

from moondream_iac.spec.schema import DeploySpec
from moondream_iac.weights.revisions import RevisionInfo

SETTINGS_PREFIX = "MOONDREAM_IAC_"


def runtime_settings(spec: DeploySpec, revision: RevisionInfo, *, dtype: str,
                     device: str) -> dict[str, str]:
    """Return the runtime's variables for ``spec``; empty values are left out."""
    settings = {
        "MODEL_REPO": spec.model.repo,
        "REVISION": spec.model.revision,
        "DTYPE": dtype,
        "DEVICE": device,
        "TRANSFORMERS_RANGE": revision.transformers or "",
        "AUTH_MODE": spec.auth.mode,
        "API_KEY_ENV": spec.auth.key_env,
        "MAX_BODY_BYTES": str(spec.server.max_body_mb * 1024 * 1024),
        "MAX_IMAGE_PIXELS": str(spec.server.max_image_pixels),
        "QUEUE_SIZE": str(spec.server.queue_size),
        "REQUEST_TIMEOUT_S": str(spec.timeouts.request),
        "IMAGE_CACHE_SIZE": str(spec.server.image_cache_size),
    }
    return {SETTINGS_PREFIX + name: value for name, value in settings.items() if value}

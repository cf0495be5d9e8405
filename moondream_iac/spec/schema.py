"""The deploy.yaml schema: one pydantic model per section, the single source of defaults and limits.

The renderer, the plan, the docs and the published JSON Schema all read defaults and
limits from here. Limits follow what Modal accepts (modal 1.6.4): several of them
(GPU names, timeouts, regions, labels) the SDK only checks on the server at deploy
time, so the schema checks them before anything is sent.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from moondream_iac.spec.gpus import default_catalog

SCHEMA_VERSION = 1

# Modal's web endpoints cut every request after this many seconds (answered with a 303
# that no Moondream client follows).
MODAL_WEB_CUTOFF_S = 150

# Modal object names (apps, volumes, secrets, environments): letters, digits, '-', '_', '.'.
MODAL_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
# Names under `environments:` in a deploy file; they are --env arguments and appear in
# messages, so they follow the Modal name rule.
ENVIRONMENT_NAME = MODAL_NAME
# A web label becomes a DNS label inside `<workspace>--<label>.modal.run`.
WEB_LABEL = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"
ENV_VAR_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
HUB_REPO = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$"
# A git tag, branch or commit sha as the hub accepts it in a URL: no spaces, quotes,
# braces or control characters.
REVISION = r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$"
# A host name, an IPv4 address or an IPv6 address without brackets.
HOST = r"^[A-Za-z0-9:][A-Za-z0-9.:-]{0,252}$"
# A file system path with no control characters (NUL, newline, tab and the like).
PLAIN_PATH = r"^[^\x00-\x1f\x7f]+$"
COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
# Branch names that move: pinning one of them gives a different model on each deploy.
MOVING_REVISIONS = frozenset({"main", "master", "head", "latest", "dev"})
# Region names Modal documents, plus provider region ids such as us-east-1 or europe-west4.
MODAL_REGIONS = frozenset({
    "us", "eu", "uk", "ap", "jp", "ca", "au", "me", "sa", "mx",
    "us-east", "us-west", "us-central", "us-south",
    "eu-west", "eu-north", "eu-central", "eu-south",
    "ap-south", "ap-southeast", "ap-northeast", "ap-east",
})
PROVIDER_REGION = re.compile(r"^[a-z]{2,12}(?:-[a-z]+)+-?[0-9]{1,2}[a-z]?$")
# Mount paths Modal rejects for volumes.
FORBIDDEN_MOUNTS = frozenset({"/", "/root", "/tmp"})

ModalName = Annotated[str, Field(pattern=MODAL_NAME, max_length=64)]


class RuleError(ValueError):
    """A broken cross-field rule; ``field`` names the field the message points at.

    ``related`` lists the rule's other fields in order. When ``field`` was left at its
    default, the message is located at the first of them that the file writes.
    """

    def __init__(self, message: str, field: str, related: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.field = field
        self.related = related


class Section(BaseModel):
    """Base for every section: frozen, strict types, and unknown keys rejected.

    Strict mode keeps the file and its JSON Schema in step: ``count: "2"``, ``count:
    true`` and ``allow_moving_revision: "yes"`` are errors instead of being coerced.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, strict=True)

    @model_validator(mode="before")
    @classmethod
    def _lists_to_tuples(cls, data: Any) -> Any:
        """Accept YAML lists for the tuple fields, which strict mode would reject."""
        if not isinstance(data, dict):
            return data
        return {key: tuple(value) if isinstance(value, list) else value
                for key, value in data.items()}


def _shown(value: Any) -> str:
    """Return ``repr(value)`` cut to 80 characters, for the (got VALUE) part of a message."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _canonical_gpu(value: Any) -> Any:
    """Normalise one GPU type name to Modal's spelling; '!' (no silent upgrade) is kept."""
    if not isinstance(value, str):
        return value
    name = value.strip()
    exact = name.endswith("!")
    base = name[:-1] if exact else name
    canonical = default_catalog().canonical(base)
    if canonical is None:
        raise ValueError(_unknown_gpu_message(value, base))
    if exact and canonical != "H100":
        raise ValueError(
            f"'!' only applies to H100, where it forbids Modal's upgrade to H200 (got "
            f"{_shown(value)}); "
            "remove the '!'"
        )
    return canonical + ("!" if exact else "")


def _unknown_gpu_message(value: str, base: str) -> str:
    catalog = default_catalog()
    names = {name.upper(): name for name in (*catalog.gpus, *catalog.aliases)}
    close = difflib.get_close_matches(base.upper(), list(names), n=1, cutoff=0.6)
    hint = f" (did you mean {names[close[0]]}?)" if close else ""
    return (f"unknown GPU type (got {_shown(value)}); use one of: {', '.join(catalog.gpus)}"
            f"{hint}")


def expand_compact_gpu(value: Any) -> Any:
    """Return the mapping form of a compact ``gpu: "H100:2"``; other values unchanged.

    The compact form stands for the whole section, so the mapping lists every field.
    A malformed count is left as it is for the schema to report.
    """
    if not isinstance(value, str):
        return value
    name, separator, count = value.partition(":")
    if not separator:
        return {"type": name, "count": 1, "fallbacks": []}
    if not count.strip().isdigit():
        return value
    return {"type": name, "count": int(count), "fallbacks": []}


GpuType = Annotated[str, Field(description="A Modal GPU type, e.g. A10G, L4, H100 or H100!.")]


class GpuSpec(Section):
    """The GPU each container gets, with an ordered list of types to try when it is scarce."""

    type: GpuType = Field(
        "A10G",
        description="GPU type, case-insensitive; H100! forbids Modal's silent upgrade to "
        "H200. A10G's 24 GB fit Moondream 2 in bfloat16.",
        examples=["A10G", "H100"],
    )
    count: int = Field(1, ge=1, le=8, description="GPUs per container.",
                       json_schema_extra={"x-unit": "GPUs"})
    fallbacks: tuple[GpuType, ...] = Field(
        (),
        max_length=8,
        description="GPU types to try in this order when `type` has no capacity; each "
        "gets the same `count`.",
        examples=[["L4", "A100-40GB"]],
    )

    @model_validator(mode="before")
    @classmethod
    def _from_compact(cls, data: Any) -> Any:
        """Accept the compact form ``"H100:2"`` for the whole section."""
        expanded = expand_compact_gpu(data)
        if isinstance(expanded, str):
            raise ValueError(
                f"invalid GPU count in {_shown(data)}; write TYPE or TYPE:COUNT, e.g. H100:2"
            )
        return expanded

    @field_validator("type", mode="before")
    @classmethod
    def _normalise_type(cls, value: Any) -> Any:
        return _canonical_gpu(value)

    @field_validator("fallbacks", mode="before")
    @classmethod
    def _normalise_fallbacks(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, (list, tuple)):
            return tuple(_canonical_gpu(item) for item in value)
        return value

    @model_validator(mode="after")
    def _check_fallbacks(self) -> GpuSpec:
        listed = (self.type, *self.fallbacks)
        duplicates = sorted({name for name in listed if listed.count(name) > 1})
        if duplicates:
            raise RuleError(
                f"GPU types must not repeat in type and fallbacks (got {', '.join(duplicates)} "
                "twice); list each type once",
                "fallbacks",
            )
        return self

    def modal_value(self) -> str | list[str]:
        """Return the value of Modal's ``gpu=`` option: one string, or an ordered list."""
        names = [name if self.count == 1 else f"{name}:{self.count}" for name in
                 (self.type, *self.fallbacks)]
        return names[0] if len(names) == 1 else names


class AutoscalingSpec(Section):
    """How many containers Modal keeps, starts and stops."""

    min_containers: int = Field(
        0, ge=0, le=1000,
        description="Containers kept running even with no traffic, billed around the clock; "
        "0 scales to zero.",
        json_schema_extra={"x-unit": "containers"},
    )
    max_containers: int | None = Field(
        None, ge=1, le=1000,
        description="Upper bound on containers; null means Modal's own limit.",
        json_schema_extra={"x-unit": "containers"},
    )
    buffer_containers: int = Field(
        0, ge=0, le=100,
        description="Idle containers kept ready beyond current demand while the app is "
        "active.",
        json_schema_extra={"x-unit": "containers"},
    )
    scaledown_window: int = Field(
        300, ge=2, le=3600,
        description="Time an idle container waits for a request before it stops; keep it "
        "longer than a cold start.",
        json_schema_extra={"x-unit": "seconds"},
    )

    @model_validator(mode="after")
    def _check_bounds(self) -> AutoscalingSpec:
        _check_not_above("min_containers", self.min_containers,
                         "max_containers", self.max_containers)
        return self


def _check_not_above(lower: str, lower_value: int | None, upper: str,
                     upper_value: int | None) -> None:
    """Raise RuleError, pointing at ``lower``, when both values are set and lower > upper."""
    if lower_value is None or upper_value is None or lower_value <= upper_value:
        return
    raise RuleError(
        f"{lower} must not exceed {upper} (got {lower}={lower_value}, {upper}={upper_value}); "
        f"lower {lower} or raise {upper}",
        lower,
    )


class ConcurrencySpec(Section):
    """How many requests one container takes at once (Modal's @modal.concurrent)."""

    max_inputs: int = Field(
        8, ge=1, le=1000,
        description="Requests one container accepts at once; the runtime queues them and "
        "runs the model one call at a time.",
        json_schema_extra={"x-unit": "requests"},
    )
    target_inputs: int | None = Field(
        None, ge=1, le=1000,
        description="Requests per container the autoscaler aims for before it adds a "
        "container; at most max_inputs. null means equal to max_inputs.",
        json_schema_extra={"x-unit": "requests"},
    )

    @model_validator(mode="after")
    def _check_target(self) -> ConcurrencySpec:
        _check_not_above("target_inputs", self.target_inputs, "max_inputs", self.max_inputs)
        return self


class TimeoutSpec(Section):
    """Time limits in seconds."""

    request: int = Field(
        120, ge=1, le=86400,
        description="Time one request may run before it is cancelled. Modal's web "
        f"endpoints cut requests at {MODAL_WEB_CUTOFF_S} s, so a larger value on the modal "
        "target draws a warning.",
        json_schema_extra={"x-unit": "seconds"},
    )
    startup: int = Field(
        600, ge=1, le=86400,
        description="Time a container may take to start and load the weights.",
        json_schema_extra={"x-unit": "seconds"},
    )


class ModelSpec(Section):
    """The Hugging Face model repository and the revision to serve."""

    repo: str = Field(
        "vikhyatk/moondream2", pattern=HUB_REPO,
        description="Hugging Face model repository, OWNER/NAME.",
    )
    revision: str = Field(
        "2025-06-21", min_length=1, max_length=128, pattern=REVISION,
        description="A release tag (e.g. 2025-06-21) or a 40-hex commit sha. A moving "
        "branch such as main is rejected unless allow_moving_revision is true.",
    )
    allow_moving_revision: bool = Field(
        False,
        description="Accept a branch name as revision; each apply may then serve "
        "different weights.",
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "bfloat16",
        description="Weight dtype on the GPU. T4 has no bfloat16, so use float16 there.",
    )
    hub_token_secret: ModalName | None = Field(
        None,
        description="Name of a Modal Secret holding HF_TOKEN, for gated or private "
        "repositories; null for public ones.",
    )

    @model_validator(mode="after")
    def _check_revision(self) -> ModelSpec:
        revision = self.revision
        if COMMIT_SHA.match(revision):
            return self
        if revision.lower() in MOVING_REVISIONS and not self.allow_moving_revision:
            raise RuleError(
                f"revision {revision!r} is a moving branch, so each deploy may serve other "
                "weights; pin a release tag such as 2025-06-21 or a 40-hex commit sha, or "
                "set model.allow_moving_revision: true",
                "revision",
            )
        if revision.lower() in MOVING_REVISIONS:
            return self
        _check_known_revision(self.repo, revision)
        return self


def _check_known_revision(repo: str, revision: str) -> None:
    """Reject a tag that the revision table does not list for this repo."""
    from moondream_iac.weights import revisions

    known = revisions.known_revisions(repo)
    if not known:
        return
    info = known.get(revision)
    if info is None:
        raise RuleError(
            f"unknown revision {revision!r} for {repo}; known tags: "
            f"{', '.join(sorted(known))}, or pin a 40-hex commit sha",
            "revision",
        )
    if not getattr(info, "supported", True):
        reason = info.reason or "its model API is not served by this runtime"
        raise RuleError(f"revision {revision!r} is not supported: {reason}", "revision")


class VolumeSpec(Section):
    """The Modal Volume that contains the weights."""

    name: ModalName = Field(
        "moondream-weights", description="Modal Volume name."
    )
    mount_path: str = Field(
        "/weights", max_length=255, pattern=PLAIN_PATH,
        description="Absolute path where the volume is mounted in the container; not /, "
        "/root or /tmp.",
    )

    @field_validator("mount_path")
    @classmethod
    def _check_mount(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(
                f"mount_path must be an absolute path (got {value!r}); write it from /, "
                "e.g. /weights"
            )
        normalised = "/" + "/".join(part for part in value.split("/") if part)
        if normalised in FORBIDDEN_MOUNTS:
            raise ValueError(
                f"mount_path must not be /, /root or /tmp, which Modal reserves (got {value!r}); "
                "mount the volume elsewhere, e.g. /weights"
            )
        if any(part in (".", "..") for part in value.split("/")):
            raise ValueError(
                f"mount_path must not contain '.' or '..' (got {value!r}); write the path "
                "without them"
            )
        return normalised


class AuthSpec(Section):
    """Who may call the endpoint."""

    mode: Literal["api_key", "proxy", "none"] = Field(
        "api_key",
        description="api_key: clients send the key in X-Moondream-Auth (what Magnitude's "
        "apiKey option does); proxy: Modal proxy auth tokens (Modal-Key/Modal-Secret "
        "headers); none: open to anyone with the URL, which must be written explicitly.",
    )
    secret: ModalName = Field(
        "moondream-api-key",
        description="Name of the Modal Secret holding the key (mode api_key).",
    )
    key_env: str = Field(
        "MOONDREAM_API_KEY", pattern=ENV_VAR_NAME,
        description="Variable inside that secret (and, for the local target, in the "
        "environment) holding the key.",
    )


class PlacementSpec(Section):
    """Where Modal may run the containers."""

    region: tuple[str, ...] = Field(
        (), max_length=16,
        description="Regions to run in, e.g. us-east or [us-east, us-west]; empty means "
        "any region.",
    )
    cloud: Literal["aws", "gcp", "oci", "auto"] | None = Field(
        None, description="Cloud provider: aws, gcp, oci or auto; null leaves the choice to "
        "Modal."
    )

    @field_validator("region", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        if isinstance(value, str):
            return (value,)
        return tuple(value) if isinstance(value, list) else value

    @field_validator("region")
    @classmethod
    def _check_regions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for region in value:
            if region not in MODAL_REGIONS and not PROVIDER_REGION.match(region):
                raise ValueError(
                    f"unknown region {_shown(region)}; use a Modal region such as us-east, "
                    "eu-west or ap-south, or a provider id such as us-east-1"
                )
        return value


class ServerSpec(Section):
    """Limits of the serving runtime in each container."""

    queue_size: int = Field(
        32, ge=1, le=10000,
        description="Requests a container holds waiting for the model; beyond it the "
        "server answers 503 with Retry-After.",
        json_schema_extra={"x-unit": "requests"},
    )
    max_body_mb: int = Field(
        20, ge=1, le=512, description="Largest request body.",
        json_schema_extra={"x-unit": "MiB"},
    )
    max_image_pixels: int = Field(
        16_000_000, ge=65_536, le=400_000_000,
        description="Largest image (width x height), checked before decoding; 16000000 is "
        "4000x4000.",
        json_schema_extra={"x-unit": "pixels"},
    )
    image_cache_size: int = Field(
        8, ge=0, le=10000,
        description="Encoded images kept per container, keyed by content hash, so repeated "
        "requests on one screenshot skip encoding. Each entry holds the image's key/value "
        "cache on the GPU, an estimated 140 MB for Moondream 2. 0 disables the cache.",
        json_schema_extra={"x-unit": "images"},
    )


class LocalSpec(Section):
    """The local target: the same runtime under uvicorn on this machine."""

    host: str = Field(
        "127.0.0.1", max_length=253, pattern=HOST,
        description="Interface to listen on; 127.0.0.1 accepts connections from this "
        "machine only.",
    )
    port: int = Field(2020, ge=1, le=65535, description="TCP port.")
    weights_dir: str = Field(
        ".moondream_iac/weights", max_length=4096, pattern=PLAIN_PATH,
        description="Folder for the weights, relative to deploy.yaml unless absolute.",
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto", description="Torch device; auto picks cuda when available, else cpu."
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto",
        description="Weight dtype for the local target; auto picks bfloat16 on cuda and "
        "float32 on cpu.",
    )


class AppSpec(Section):
    """The Modal app and its web endpoint."""

    name: ModalName = Field("moondream", description="Modal app name.")
    label: str = Field(
        "moondream", pattern=WEB_LABEL, max_length=63,
        description="Web label: the URL is https://<workspace>--<label>.modal.run/v1. "
        "Lowercase letters, digits and '-'.",
    )
    environment: ModalName | None = Field(
        None,
        description="Modal environment to deploy into; null uses the profile's default "
        "(or MODAL_ENVIRONMENT).",
    )
    python_version: Literal["3.10", "3.11", "3.12"] = Field(
        "3.11", description="Python version of the container image."
    )

    @field_validator("label")
    @classmethod
    def _check_label(cls, value: str) -> str:
        if "--" in value:
            raise ValueError(
                f"label must not contain '--', which separates workspace and label in "
                f"the URL (got {value!r}); use a single '-'"
            )
        return value


class DeploySpec(Section):
    """A Moondream deployment: everything apply needs, with defaults filled in."""

    version: Literal[1] = Field(1, description="Schema version of this file. Only 1 exists.")
    target: Literal["modal", "local"] = Field(
        "modal",
        description="Where apply deploys: modal (a Modal app) or local (uvicorn on this "
        "machine).",
    )
    app: AppSpec = Field(default_factory=AppSpec, description="The Modal app and web label.")
    gpu: GpuSpec = Field(default_factory=GpuSpec, description="GPU type, count, fallbacks.")
    autoscaling: AutoscalingSpec = Field(
        default_factory=AutoscalingSpec, description="Container counts and idle window."
    )
    concurrency: ConcurrencySpec = Field(
        default_factory=ConcurrencySpec, description="Requests per container."
    )
    timeouts: TimeoutSpec = Field(default_factory=TimeoutSpec, description="Time limits.")
    model: ModelSpec = Field(default_factory=ModelSpec, description="Model repo and revision.")
    volume: VolumeSpec = Field(default_factory=VolumeSpec, description="Weights volume.")
    secrets: tuple[ModalName, ...] = Field(
        (), max_length=32,
        description="Extra Modal Secrets to attach, by name only.",
    )
    auth: AuthSpec = Field(default_factory=AuthSpec, description="Endpoint authentication.")
    placement: PlacementSpec = Field(
        default_factory=PlacementSpec, description="Region and cloud."
    )
    server: ServerSpec = Field(default_factory=ServerSpec, description="Runtime limits.")
    local: LocalSpec = Field(default_factory=LocalSpec, description="The local target.")

    @model_validator(mode="after")
    def _check_cross_fields(self) -> DeploySpec:
        self._check_dtype_on_gpu()
        self._check_secret_names()
        return self

    def _check_dtype_on_gpu(self) -> None:
        if self.model.dtype != "bfloat16":
            return
        catalog = default_catalog()
        without = [
            name for name in (self.gpu.type, *self.gpu.fallbacks)
            if not catalog.gpus[name.rstrip("!")].bfloat16
        ]
        if without:
            raise RuleError(
                f"bfloat16 is not supported on {', '.join(without)} "
                f"(gpu.type={self.gpu.type}); set model.dtype: float16",
                "model.dtype",
                related=("gpu.type", "gpu.fallbacks"),
            )

    def _check_secret_names(self) -> None:
        duplicates = sorted({name for name in self.secrets if self.secrets.count(name) > 1})
        if duplicates:
            raise RuleError(
                f"secrets must not repeat (got {', '.join(duplicates)} twice); list each once",
                "secrets",
            )

    def modal_secret_names(self) -> list[str]:
        """Return every Modal Secret the app attaches, in a stable order, names only."""
        names = list(self.secrets)
        if self.auth.mode == "api_key":
            names.append(self.auth.secret)
        if self.model.hub_token_secret:
            names.append(self.model.hub_token_secret)
        return list(dict.fromkeys(names))


def normalised(spec: DeploySpec) -> dict[str, Any]:
    """Return the spec as plain JSON data with every default written out."""
    return spec.model_dump(mode="json")


def spec_hash(spec: DeploySpec) -> str:
    """Return a short, stable hash of the normalised spec (the first 16 hex digits of sha256)."""
    canonical = json.dumps(normalised(spec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]

"""Settings of the serving runtime, from arguments or from plain environment variables.

The rendered Modal app and the local target configure the server with these variables
(all optional except the model directory, with the default in brackets):

- ``MOONDREAM_IAC_MODEL_DIR``: directory of the model in Hugging Face format (required).
- ``MOONDREAM_IAC_LOCK_FILE``: weights lock file; when set, every model file is checked
  against its sha256 before loading [unset].
- ``MOONDREAM_IAC_MODEL_REPO``, ``MOONDREAM_IAC_REVISION``: repo id and revision, only
  reported by ``/v1/health`` [empty].
- ``MOONDREAM_IAC_DTYPE``: ``auto``, ``bfloat16``, ``float16`` or ``float32`` [auto].
- ``MOONDREAM_IAC_DEVICE``: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` [auto].
- ``MOONDREAM_IAC_TRANSFORMERS_RANGE``: PEP 440 specifier the installed transformers
  must satisfy, such as ``>=4.51,<5`` [``<5``].
- ``MOONDREAM_IAC_AUTH_MODE``: ``api_key`` (the server checks the key), ``proxy`` (Modal
  checks its proxy token before requests arrive) or ``none`` [``api_key`` when the key
  variable is set and not empty, otherwise ``none``].
- ``MOONDREAM_IAC_API_KEY_ENV``: name of the variable that contains the API key
  [``MOONDREAM_API_KEY``]. The key itself is read from that variable.
- ``MOONDREAM_IAC_MAX_BODY_BYTES`` [20971520], ``MOONDREAM_IAC_MAX_IMAGE_PIXELS``
  [16000000], ``MOONDREAM_IAC_QUEUE_SIZE`` [32], ``MOONDREAM_IAC_REQUEST_TIMEOUT_S``
  [120], ``MOONDREAM_IAC_BODY_TIMEOUT_S`` [30], ``MOONDREAM_IAC_IMAGE_CACHE_SIZE`` [8]:
  limits, see ``ServerSettings``.
- ``MOONDREAM_IAC_SPEC_HASH``, ``MOONDREAM_IAC_TOOL_VERSION``: reported by
  ``/v1/health`` so a plan can compare the live deployment with the spec.
- ``MOONDREAM_IAC_HOST`` [127.0.0.1], ``MOONDREAM_IAC_PORT`` [2020]: where to listen.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from moondream_iac import __version__
from moondream_iac.errors import IacError

ENV_PREFIX = "MOONDREAM_IAC_"
DEFAULT_API_KEY_ENV = "MOONDREAM_API_KEY"
AUTH_MODES = ("api_key", "proxy", "none")
DTYPES = ("auto", "bfloat16", "float16", "float32")


class SettingsError(IacError, ValueError):
    """A server setting is missing or invalid."""


@dataclass(frozen=True)
class ServerSettings:
    """Everything the serving runtime needs besides the model itself.

    ``api_key`` is left out of ``repr`` so that logging the settings leaks no secret.
    """

    model_dir: Path
    lock_file: Path | None = None
    model_repo: str = ""
    revision: str = ""
    dtype: str = "auto"
    device: str = "auto"
    transformers_range: str | None = None
    auth_mode: str = "none"
    api_key: str | None = field(default=None, repr=False)
    api_key_env: str = DEFAULT_API_KEY_ENV
    # Bytes of a request body. A 1920x1080 PNG screenshot in base64 is about 2-4 MB.
    max_body_bytes: int = 20 * 1024 * 1024
    # Width times height of a decoded image, checked on the image header before decoding.
    max_image_pixels: int = 16_000_000
    # Requests waiting for the model beyond the one running; more get 503 at once.
    queue_size: int = 32
    # Queue wait plus model time of one request. Modal ends web requests after 150 s.
    request_timeout_s: float = 120.0
    # Seconds the whole request body may take to arrive, counted in request_timeout_s.
    # A slower body gets 408, so a client that trickles bytes cannot hold a connection.
    body_timeout_s: float = 30.0
    # Encoded images kept, keyed by the sha256 of the image bytes.
    # NOTE: an encoding of the 2025 model code contains the image's key/value cache on the
    # model's device: by estimate about 140 MB in bfloat16 (24 layers, 2048 wide, about
    # 730 image tokens), so the default of 8 entries can take about 1.1 GB of GPU memory.
    # 0 disables the cache.
    image_cache_size: int = 8
    spec_hash: str = ""
    tool_version: str = __version__
    host: str = "127.0.0.1"
    port: int = 2020

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_dir", Path(self.model_dir))
        if self.lock_file is not None:
            object.__setattr__(self, "lock_file", Path(self.lock_file))
        self._check_choices()
        self._check_limits()

    def _check_choices(self) -> None:
        if self.auth_mode not in AUTH_MODES:
            raise SettingsError(
                f"invalid auth_mode {self.auth_mode!r}: expected one of {', '.join(AUTH_MODES)}"
            )
        if self.auth_mode == "api_key" and not self.api_key:
            raise SettingsError(
                f"auth_mode is api_key but no API key is set: put the key in the "
                f"{self.api_key_env} environment variable, or set auth_mode to none or proxy"
            )
        if self.api_key and not _is_header_safe(self.api_key):
            raise SettingsError(
                f"invalid API key in {self.api_key_env}: it contains non-ASCII characters, control "
                "characters or leading or trailing spaces, which HTTP headers cannot carry unchanged; "
                "use a key of printable ASCII characters"
            )
        if self.dtype not in DTYPES:
            raise SettingsError(
                f"invalid dtype {self.dtype!r}: expected one of {', '.join(DTYPES)}"
            )

    def _check_limits(self) -> None:
        positive = {
            "max_body_bytes": self.max_body_bytes,
            "max_image_pixels": self.max_image_pixels,
            "queue_size": self.queue_size,
            "request_timeout_s": self.request_timeout_s,
            "body_timeout_s": self.body_timeout_s,
        }
        for name, value in positive.items():
            if value <= 0:
                raise SettingsError(f"invalid {name} {value!r}: expected a number above 0")
        if self.image_cache_size < 0:
            raise SettingsError(
                f"invalid image_cache_size {self.image_cache_size!r}: expected 0 (off) or more")
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"invalid port {self.port!r}: expected 0 to 65535")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> ServerSettings:
        """Build settings from ``MOONDREAM_IAC_*`` variables; ``overrides`` take precedence.

        An override whose value is None is ignored, so unset command-line options fall
        back to the environment and then to the defaults.
        """
        environ = os.environ if environ is None else environ
        values = _values_from_env(environ)
        values.update({name: value for name, value in overrides.items() if value is not None})

        if "model_dir" not in values:
            raise SettingsError(
                f"the model directory is not set: pass --model-dir or set {ENV_PREFIX}MODEL_DIR"
            )
        key_env = str(values.get("api_key_env", DEFAULT_API_KEY_ENV))
        values.setdefault("api_key", environ.get(key_env) or None)
        values.setdefault("auth_mode", "api_key" if values["api_key"] else "none")
        return cls(**values)


_PARSERS = {
    "model_dir": Path,
    "lock_file": Path,
    "model_repo": str,
    "revision": str,
    "dtype": str,
    "device": str,
    "transformers_range": str,
    "auth_mode": str,
    "api_key_env": str,
    "max_body_bytes": int,
    "max_image_pixels": int,
    "queue_size": int,
    "request_timeout_s": float,
    "body_timeout_s": float,
    "image_cache_size": int,
    "spec_hash": str,
    "tool_version": str,
    "host": str,
    "port": int,
}


def _is_header_safe(value: str) -> bool:
    """Return whether ``value`` reaches the server unchanged as an HTTP header value.

    Servers decode header bytes as Latin-1 and strip surrounding whitespace, so a
    non-ASCII key sent as UTF-8 never matches.
    """
    return value.isascii() and value.isprintable() and value == value.strip()


def _values_from_env(environ: Mapping[str, str]) -> dict[str, object]:
    values: dict[str, object] = {}
    for name, parse in _PARSERS.items():
        variable = ENV_PREFIX + name.upper()
        raw = environ.get(variable, "").strip()
        if not raw:
            continue
        try:
            values[name] = parse(raw)
        except ValueError:
            raise SettingsError(
                f"invalid {variable} {raw!r}: expected {parse.__name__}"
            ) from None
    return values

"""Run the server: ``python -m moondream_iac.server --model-dir DIR [options]``.

Every option defaults to its ``MOONDREAM_IAC_*`` environment variable (see
``moondream_iac.server.settings``) and then to the ``ServerSettings`` default. The model
loads in the background, so the port opens at once and ``/v1/health`` reports progress.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from functools import partial

from moondream_iac.errors import IacError


# Options that set a ServerSettings field: (flag, type, help). Unset options fall back to
# the MOONDREAM_IAC_* variable of the same name, then to the ServerSettings default.
SETTING_OPTIONS = (
    ("--model-dir", str, "model directory in Hugging Face format [MOONDREAM_IAC_MODEL_DIR]"),
    ("--lock-file", str, "weights lock file to check the model files against [unset]"),
    ("--host", str, "address to listen on [127.0.0.1]"),
    ("--port", int, "TCP port [2020]"),
    ("--device", str, "auto, cpu, cuda or cuda:N [auto]"),
    ("--api-key-env", str, "name of the environment variable that contains the API key [MOONDREAM_API_KEY]"),
    ("--model-repo", str, "model repo id, reported by /v1/health"),
    ("--revision", str, "model revision, reported by /v1/health"),
    ("--spec-hash", str, "deploy spec hash, reported by /v1/health"),
    ("--queue-size", int, "requests that may wait for the model [32]"),
    ("--request-timeout-s", float, "seconds a request may wait and run [120]"),
    ("--body-timeout-s", float, "seconds the request body may take to arrive [30]"),
    ("--max-body-bytes", int, "largest request body in bytes [20971520]"),
    ("--max-image-pixels", int, "largest image, width times height [16000000]"),
)


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m moondream_iac.server",
        description="Serve the Moondream HTTP API for a model directory in Hugging Face format.",
        epilog="Each option defaults to its MOONDREAM_IAC_<OPTION> environment variable "
        "(for example MOONDREAM_IAC_QUEUE_SIZE), then to the value in brackets.",
    )
    for flag, kind, help_text in SETTING_OPTIONS:
        parser.add_argument(flag, type=kind, help=help_text)
    parser.add_argument(
        "--dtype", choices=("auto", "bfloat16", "float16", "float32"), help="weights dtype [auto]"
    )
    parser.add_argument(
        "--auth-mode", choices=("api_key", "proxy", "none"),
        help="who checks credentials [api_key when the key variable is set, else none]",
    )
    parser.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warning", "error"), help="log level [info]"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    logging.basicConfig(
        level=arguments.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    from moondream_iac.server.settings import ServerSettings

    overrides = {
        name: value
        for name, value in vars(arguments).items()
        if name != "log_level"
    }
    try:
        settings = ServerSettings.from_env(**overrides)
    except IacError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    serve(settings, log_level=arguments.log_level)
    return 0


def serve(settings, *, log_level: str = "info") -> None:
    """Run uvicorn on ``settings.host:settings.port``, loading the model in the background."""
    import uvicorn

    from moondream_iac.server.app import create_app
    from moondream_iac.server.model import load_model

    loader = partial(
        load_model,
        settings.model_dir,
        dtype=settings.dtype,
        device=settings.device,
        lock_file=settings.lock_file,
        transformers_range=settings.transformers_range,
    )
    app = create_app(settings, loader=loader)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        access_log=False,
        # On SIGTERM, running requests get as long as a request may take, then are dropped.
        timeout_graceful_shutdown=int(settings.request_timeout_s),
    )


if __name__ == "__main__":
    sys.exit(main())

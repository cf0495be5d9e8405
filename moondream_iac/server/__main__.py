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


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m moondream_iac.server",
        description="Serve the Moondream HTTP API for a model directory in Hugging Face format.",
    )
    parser.add_argument("--model-dir", help="model directory [MOONDREAM_IAC_MODEL_DIR]")
    parser.add_argument("--lock-file", help="weights lock file to check the model files against [MOONDREAM_IAC_LOCK_FILE]")
    parser.add_argument("--host", help="address to listen on [MOONDREAM_IAC_HOST, default 127.0.0.1]")
    parser.add_argument("--port", type=int, help="TCP port [MOONDREAM_IAC_PORT, default 2020]")
    parser.add_argument("--dtype", choices=("auto", "bfloat16", "float16", "float32"), help="weights dtype [MOONDREAM_IAC_DTYPE, default auto]")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N [MOONDREAM_IAC_DEVICE, default auto]")
    parser.add_argument("--auth-mode", choices=("api_key", "proxy", "none"), help="who checks credentials [MOONDREAM_IAC_AUTH_MODE]")
    parser.add_argument("--api-key-env", help="name of the environment variable that contains the API key [default MOONDREAM_API_KEY]")
    parser.add_argument("--model-repo", help="model repo id, reported by /v1/health")
    parser.add_argument("--revision", help="model revision, reported by /v1/health")
    parser.add_argument("--spec-hash", help="deploy spec hash, reported by /v1/health")
    parser.add_argument("--queue-size", type=int, help="requests that may wait for the model [default 32]")
    parser.add_argument("--request-timeout-s", type=float, help="seconds a request may wait and run [default 120]")
    parser.add_argument("--max-body-bytes", type=int, help="largest request body in bytes [default 20 MiB]")
    parser.add_argument("--max-image-pixels", type=int, help="largest image, width times height [default 16000000]")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"), help="log level [info]")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    logging.basicConfig(level=arguments.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

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

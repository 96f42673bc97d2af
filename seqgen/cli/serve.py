"""seqgen serve: an OpenAI-compatible HTTP server (completions, streaming, compose) over a run or
an ONNX bundle; a bundle is served with onnxruntime and numpy alone."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from seqgen.cli._options import GENERATE_DEVICE, Device, RunArg
from seqgen.cli._util import err

API_KEY_ENV = "SEQGEN_API_KEY"


def serve(
    run: RunArg = None,
    host: Annotated[str, typer.Option(help="Address to listen on (loopback unless told otherwise).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    api_key: Annotated[str | None, typer.Option(
        "--api-key", help=f"Require Authorization: Bearer KEY (default: ${API_KEY_ENV} when set).")] = None,
    max_tokens: Annotated[int, typer.Option(help="The most tokens one request may ask for.")] = 4096,
    max_rows: Annotated[int, typer.Option(help="Rows (streams) decoded together in one step.")] = 64,
    max_queue: Annotated[int, typer.Option(help="Rows that may wait for a place; more are answered 503.")] = 64,
    max_body: Annotated[int, typer.Option(help="The largest request body, in bytes (larger: 413).")] = 1 << 20,
    grace: Annotated[float, typer.Option(help="Seconds running streams get to finish after SIGTERM.")] = 10.0,
    device: Device = GENERATE_DEVICE,
) -> None:
    """Serve a run or bundle over HTTP: the OpenAI completions API, /v1/compose for music, a playground at /."""
    from seqgen.errors import ConfigError
    from seqgen.serve.server import require_serve_extra

    require_serve_extra()
    for name, value in (("--max-tokens", max_tokens), ("--max-rows", max_rows), ("--max-queue", max_queue),
                        ("--max-body", max_body)):
        if value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")
    if not 0 < port < 65536:
        raise ConfigError(f"--port must be between 1 and 65535, got {port}")
    if grace < 0:
        raise ConfigError(f"--grace must be >= 0 seconds, got {grace}")
    from pathlib import Path

    from seqgen.engines.load import open_generator
    from seqgen.serve.app import ServeConfig
    from seqgen.serve.server import serve as run_server

    gen = open_generator(run, device=device, threads=1)
    source = Path(gen.source) if gen.source is not None else Path("model")
    name = (source.parent.name if source.is_file() else source.resolve().name) or "model"
    key = api_key if api_key is not None else (os.environ.get(API_KEY_ENV) or None)
    config = ServeConfig(name=name, max_tokens=max_tokens, max_body=max_body, max_rows=max_rows,
                         max_queue=max_queue, api_key=key)
    engine = "onnxruntime" if gen.info.get("bundle") else "torch"
    try:
        run_server(gen, config, host, port, grace,
                   on_ready=lambda url: err.print(f"serving {name} ({gen.model_type}, {engine}) on {url}"
                                                  f"{' (API key required)' if key else ''}", markup=False),
                   on_stop=lambda why: err.print(why, markup=False))
    except OSError as e:
        raise ConfigError(f"cannot serve on {host}:{port}: {e}") from None
    err.print("stopped", markup=False)

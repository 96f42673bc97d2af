"""Run the app with uvicorn on one port; SIGTERM (or Ctrl-C) stops accepting, lets the running
streams finish within ``grace`` seconds, and returns normally (the CLI then exits 0)."""

from __future__ import annotations

import signal
from collections.abc import Callable

from seqgen.errors import MissingExtraError
from seqgen.serve.app import ServeConfig, build_app


def require_serve_extra() -> None:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise MissingExtraError("seqgen serve needs the serve extra: pip install 'seqgen[serve]' "
                                "(starlette and uvicorn)") from None


def serve(gen, config: ServeConfig, host: str = "127.0.0.1", port: int = 8000, grace: float = 10.0,
          on_ready: Callable[[str], None] = lambda _: None, on_stop: Callable[[str], None] = lambda _: None) -> None:
    """Serve ``gen`` until SIGTERM or SIGINT. ``on_ready(url)`` is told once the port listens."""
    import uvicorn

    app, svc = build_app(gen, config)

    class _Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            # uvicorn would raise the signal again after its shutdown (exit status 143); a
            # shutdown asked for is a normal end here
            if not self.should_exit:
                on_stop(f"{signal.Signals(sig).name}: finishing running streams (up to {grace:g}s)")
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True
            self.should_exit = True

        async def startup(self, sockets=None) -> None:
            await super().startup(sockets)
            if self.started:
                on_ready(f"http://{host}:{port}")

    cfg = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off",
                         timeout_graceful_shutdown=grace, h11_max_incomplete_event_size=64 * 1024)
    server = _Server(cfg)
    try:
        server.run()
    finally:
        svc.batcher.close()
    if not server.started:
        raise OSError(f"cannot listen on {host}:{port}")

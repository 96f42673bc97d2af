"""What every command shares: the error boundary and the consoles.

Results go to stdout, progress and diagnostics to stderr. A ``SeqgenError`` becomes one red
line and exit code 1, never a traceback.
"""

from __future__ import annotations

import functools
import sys
from typing import Callable

import typer
from rich.console import Console

err = Console(stderr=True, highlight=False)
out = Console(highlight=False, soft_wrap=True)


def fail(message: str) -> "typer.Exit":
    err.print(f"[bold red]error:[/] {message}", markup=True, highlight=False, soft_wrap=True)
    return typer.Exit(1)


def handle_errors(fn: Callable) -> Callable:
    """Turn user errors into one line on stderr and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from seqgen.errors import SeqgenError

        try:
            return fn(*args, **kwargs)
        except SeqgenError as e:
            raise fail(_escape(str(e))) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None
        except BrokenPipeError:
            sys.stderr.close()
            raise typer.Exit(0) from None

    return wrapper


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def torch_threads(threads: int | None) -> None:
    """Set torch's CPU threads when a torch engine is loaded (one is fastest for one-token steps)."""
    if threads is None:
        return
    if threads < 1:
        from seqgen.errors import ConfigError

        raise ConfigError(f"--threads must be at least 1, got {threads}")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)

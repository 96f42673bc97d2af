"""What every command shares: the consoles, the error boundary, and progress display.

Results go to stdout, progress and diagnostics to stderr. ``SeqgenGroup.invoke`` is the one
error boundary: a ``SeqgenError`` becomes one red line and exit code 1, never a traceback; any
other exception is a bug and prints one line saying so and how to see the traceback
(``--debug`` or ``SEQGEN_DEBUG=1``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

err = Console(stderr=True, highlight=False)
out = Console(highlight=False, soft_wrap=True)
DEBUG_ENV = "SEQGEN_DEBUG"


def error_line(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False, soft_wrap=True)


def debugging(ctx: typer.Context | None) -> bool:
    return bool(os.environ.get(DEBUG_ENV)) or bool(ctx is not None and ctx.meta.get("seqgen.debug"))


def _notes(show):
    """``warnings.showwarning`` that shows the library's notes for the user (``CacheRebuilt``: a
    damaged token cache being rebuilt) as one yellow line, and leaves other warnings to ``show``."""

    def showwarning(message, category, filename, lineno, file=None, line=None) -> None:
        if category.__name__ == "CacheRebuilt":
            err.print(f"[yellow]note:[/] {escape(str(message))}", soft_wrap=True)
        else:
            show(message, category, filename, lineno, file, line)

    return showwarning


class SeqgenGroup(TyperGroup):
    """The root command group; its ``invoke`` is the error boundary of every command."""

    def invoke(self, ctx: typer.Context):
        import warnings

        from seqgen.errors import SeqgenError

        try:
            with warnings.catch_warnings():
                warnings.showwarning = _notes(warnings.showwarning)
                return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # exits and usage errors (exit code 2) are typer's
        except SeqgenError as e:
            error_line(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None
        except BrokenPipeError:
            with contextlib.suppress(Exception):
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - stdout is gone; drop the rest quietly
            raise typer.Exit(0) from None
        except Exception as e:
            if debugging(ctx):
                raise
            first = (str(e).strip().splitlines() or [""])[0][:200]
            error_line(f"unexpected {type(e).__name__}: {first} (this is a bug in seqgen; run again with --debug "
                       f"or {DEBUG_ENV}=1 to see the traceback, and report it)")
            raise typer.Exit(1) from None


@contextlib.contextmanager
def corpus_feedback(quiet: bool = False) -> Iterator[dict]:
    """Callbacks for reading a corpus: a progress bar on stderr (on a terminal, unless quiet)
    and the list of skipped files (always). Yields the keyword arguments
    (``progress``, ``report``) to hand to the library."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeRemainingColumn(),
                   console=err, transient=True, disable=quiet or not err.is_terminal)
    tasks: dict[str, int] = {}

    def progress(task: str, done: int, total: int) -> None:
        if task not in tasks:
            if not tasks:
                bar.start()
            tasks[task] = bar.add_task(task, total=total or None)
        bar.update(tasks[task], completed=done, total=total or None)

    def report(skipped: list, total: int) -> None:  # shown even when quiet: it is a warning
        err.print(f"[yellow]skipped {len(skipped)} of {total} file(s):[/]")
        for name, reason in skipped[:10]:
            err.print(f"  {escape(name)}: {escape(reason)}", soft_wrap=True)
        if len(skipped) > 10:
            err.print(f"  ... and {len(skipped) - 10} more")

    try:
        yield {"progress": progress, "report": report}
    finally:
        bar.stop()


def log_line(line: str) -> None:
    """A library log line (``log=`` callbacks), as plain text on stderr."""
    err.print(line, markup=False, highlight=False, soft_wrap=True)

"""The ``seqgen`` command. Each command lives in its own module and imports the library
inside its function, so ``seqgen --help`` and ``--version`` load neither torch nor music21.
The root group (``seqgen.cli._util.SeqgenGroup``) is the one error boundary."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from seqgen import __version__
from seqgen.cli._util import SeqgenGroup

app = typer.Typer(
    name="seqgen",
    cls=SeqgenGroup,
    help="Train sequence generators on text and music, sample from them, export them to ONNX.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"seqgen {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of an unexpected error.")] = False,
) -> None:
    """Train sequence generators on text and music, sample from them, export them to ONNX."""
    ctx.meta["seqgen.debug"] = debug


def _register() -> None:
    from seqgen.cli import bench, compose, corpus, export, infill, sample, score, serve, train
    from seqgen.cli import eval as eval_cmd

    app.command(no_args_is_help=True)(train.train)
    app.command()(sample.sample)
    app.command(name="eval")(eval_cmd.evaluate)
    app.command(no_args_is_help=True)(infill.infill)
    app.command(no_args_is_help=True)(score.score)
    app.command()(compose.compose)
    app.command()(export.export)
    app.command()(bench.bench)
    app.command()(serve.serve)
    app.add_typer(corpus.app, name="corpus")
    from seqgen.cli import plot, render, runs

    app.command(name="runs")(runs.runs)
    app.command(no_args_is_help=True)(plot.plot)
    app.command(no_args_is_help=True)(render.render)


_register()


def main() -> None:
    try:
        app()
    except SystemExit as e:
        import os
        import sys

        if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
            # A process of a torchrun launch ends here, past the ranks' last barrier: it exits at
            # once with its code, skipping the interpreter's teardown, where gloo's threads could
            # abort the process ("terminate called without an active exception") after a run
            # that went well, and the launcher would take that for a failure.
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if not isinstance(e.code, (int, type(None))):
                print(e.code, file=sys.stderr)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        raise

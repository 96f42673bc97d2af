"""The ``seqgen`` command. Each command lives in its own module and imports the library
inside its function, so ``seqgen --help`` and ``--version`` load neither torch nor music21."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from seqgen import __version__

app = typer.Typer(
    name="seqgen",
    help="Train sequence generators on text and music, sample from them, export them to ONNX.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"seqgen {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = None,
) -> None:
    """Train sequence generators on text and music, sample from them, export them to ONNX."""


def _register() -> None:
    from seqgen.cli import bench, compose, corpus, export, infill, sample, train
    from seqgen.cli import eval as eval_cmd

    app.command(no_args_is_help=True)(train.train)
    app.command()(sample.sample)
    app.command(name="eval")(eval_cmd.evaluate)
    app.command(no_args_is_help=True)(infill.infill)
    compose.register(app)
    export.register(app)
    bench.register(app)
    app.add_typer(corpus.app, name="corpus")


_register()


def main() -> None:
    app()

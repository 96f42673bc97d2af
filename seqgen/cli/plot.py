"""seqgen plot: loss curves of one or more runs on shared axes, in the terminal or as a picture."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from seqgen.cli._util import err, out

X_AXES = ("steps", "time", "tokens")  # seqgen.history.X_AXES, kept here so --help loads nothing


def plot(
    runs: Annotated[list[str], typer.Argument(help="Run folders (or names under runs/) to draw together.")],
    x: Annotated[
        str, typer.Option("--x", help=f"Horizontal axis: {', '.join(X_AXES)} (tokens = step x batch x window).")
    ] = "steps",
    out_path: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            help="Write a picture (.png, .svg or .pdf) instead of drawing in the terminal; "
                 "needs the plot extra (matplotlib).",
        ),
    ] = None,
    size: Annotated[
        Optional[str], typer.Option(help="Picture size in pixels, WIDTHxHEIGHT (default 1000x600).")
    ] = None,
    title: Annotated[Optional[str], typer.Option(help="Picture title.")] = None,
    train_loss: Annotated[
        bool, typer.Option("--train/--no-train", help="Also draw the training loss (dashed, pictures only).")
    ] = True,
) -> None:
    """Draw the validation (and training) loss of RUN... against steps, training time or tokens
    seen, one colour per run, each run's best point marked. Compare settings side by side."""
    from seqgen.errors import ConfigError, RunError
    from seqgen.history import load_run
    from seqgen.runs import resolve_run

    if x not in X_AXES:
        raise ConfigError(f"--x must be one of {', '.join(X_AXES)}, got {x!r}")
    px = None
    if out_path is not None:
        from seqgen import plots

        plots.image_format(out_path)
        px = plots.parse_size(size, plots.CURVES_SIZE)
        plots.require_matplotlib()
    elif size is not None:
        raise ConfigError("--size is for pictures; add --out FILE.png")
    loaded = [load_run(resolve_run(r)) for r in runs]
    drawn = [r for r in loaded if r.metrics.records]
    if len(drawn) < len(loaded):
        if not drawn:
            raise RunError(loaded[0].no_evaluations() if len(loaded) == 1 else
                           f"none of the {len(loaded)} runs has an evaluation yet")
        for r in loaded:
            if not r.metrics.records:
                err.print(f"[yellow]left out: {_escape(r.no_evaluations())}[/]")
    for r in drawn:
        for p in r.problems:
            err.print(f"[yellow]{_escape(p)}[/]")
    curves = [r.curve(name) for r, name in zip(drawn, _labels(drawn))]
    if out_path is None:
        from seqgen.cli.charts import chart_width, loss_chart

        out.print(loss_chart(curves, x=x, width=chart_width(out, cap=100), height=14))
        return
    path = plots.loss_curves(curves, out_path, x=x, size=px, title=title, train=train_loss)
    out.print(f"wrote {path}")


def _labels(loaded) -> list[str]:
    """Run names, or their paths where two runs share a name."""
    names = [r.name for r in loaded]
    return [str(r.path) if names.count(r.name) > 1 else r.name for r in loaded]


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)

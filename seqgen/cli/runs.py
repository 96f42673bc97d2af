"""seqgen runs: a table of the runs under runs/ (or FOLDER), or their figures as JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from seqgen.cli._util import err, out

SORTS = ("date", "loss", "name", "steps")  # seqgen.history.SORTS, kept here so --help loads nothing


COLUMNS = (
    ("run", {"overflow": "fold"}), ("corpus", {"overflow": "fold"}), ("model", {"overflow": "fold"}),
    *((name, {"justify": "right", "no_wrap": True}) for name in ("steps", "time", "nats", "bits")),
    ("when", {"no_wrap": True}), ("resume", {"no_wrap": True}), ("export", {"overflow": "fold"}),
)
CAPTION = (
    "(init RUN): started from RUN's weights (train --init). nats, bits: best validation loss per token. "
    "resume: yes = last.pt and budget left; done = budget used (extend with --resume --steps or --time). "
    "export: bundle folder in exports/."
)


def runs(
    folder: Annotated[Path, typer.Argument(help="A folder of runs (or one run folder).")] = Path("runs"),
    sort: Annotated[
        str, typer.Option(help=f"Order: {', '.join(SORTS)} (date: newest first; loss: best first).")
    ] = "date",
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as a JSON list, for scripts.")] = False,
) -> None:
    """List runs: corpus, model and size, steps, time, best validation loss (nats and bits per
    token), when, and whether they can be resumed or have been exported (found in exports/)."""
    import json

    from seqgen.history import list_runs

    found = list_runs(folder, sort=sort)
    if as_json:
        out.print_json(json.dumps([r.to_dict() for r in found]))
    elif not found:
        err.print(f"no runs under {folder}/; train one with `seqgen train CORPUS`")
    else:
        out.print(_table(found, folder))
    for r in found:
        for p in r.problems:
            err.print(f"[yellow]{_escape(p)}[/]")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _table(found, folder: Path):
    from rich.table import Table

    from seqgen.cli.charts import fmt_clock

    t = Table(title=f"runs under {folder}", title_justify="left", header_style="bold underline", box=None,
              pad_edge=False, caption=CAPTION, caption_justify="left", caption_style="dim")
    for name, opts in COLUMNS:
        t.add_column(name, **opts)
    for r in found:
        d = r.to_dict()
        model = d["model"] or "?"
        if d["layers"] and d["dim"]:
            model += f" {d['layers']}x{d['dim']}"
        if d["params"]:
            model += f" {_count(d['params'])}"
        corpus = _escape(str(d["corpus"] or "?"))
        if d["init_from"]:  # the parent: its run folder's name, or the checkpoint file's
            parent = Path(d["init_from"])
            corpus += f" [dim](init {_escape(parent.parent.name if parent.suffix == '.pt' else parent.name)})[/]"
        resume = {"resumable": "[green]yes[/]", "finished": "done", "no checkpoint": "[dim]no[/]"}[d["state"]]
        t.add_row(
            _escape(d["name"]) + (" [yellow]![/]" if d["problems"] else ""), corpus, model,
            f"{d['steps']:,}" if d["steps"] is not None else "-",
            fmt_clock(d["elapsed_s"]) if d["elapsed_s"] is not None else "-",
            f"{d['best_val_loss']:.3f}" if d["best_val_loss"] is not None else "-",
            f"{d['best_val_bits']:.3f}" if d["best_val_bits"] is not None else "-",
            _when(d["when"]), resume,
            _escape(", ".join(_export(e, d["steps"]) for e in d["exports"])) or "-",
        )
    return t


def _count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k" if n >= 1e3 else str(n)


def _export(e: dict, steps: int | None) -> str:
    if e.get("step") is not None and steps is not None and e["step"] != steps:
        return f"{e['path']} (step {e['step']:,})"
    return e["path"]


def _when(t: float | None) -> str:
    if t is None:
        return "-"
    from datetime import datetime

    return datetime.fromtimestamp(t).strftime("%m-%d %H:%M")

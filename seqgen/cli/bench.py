"""seqgen bench: generation speed per engine (torch naive, torch with state, onnxruntime fp32/int8)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from seqgen.cli._util import log_line, out


def bench(
    run: Annotated[
        Optional[Path], typer.Argument(help="Run folder, checkpoint or ONNX bundle (default: the most recent run).")
    ] = None,
    tokens: Annotated[
        int, typer.Option(help="Tokens to generate per row and engine (the naive engine: a tenth).")
    ] = 500,
    batch: Annotated[
        Optional[list[int]], typer.Option(help="Batch size; repeat for several (default: 1 and 8).")
    ] = None,
    engine: Annotated[
        Optional[list[str]],
        typer.Option(help="torch-naive, torch, onnx, onnx-int8; repeat for several (default: all)."),
    ] = None,
    threads: Annotated[int, typer.Option(help="Threads for torch and onnxruntime alike.")] = 1,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON list of rows (engine, batch, tokens_per_s, ...).")
    ] = False,
) -> None:
    """Time generation at batch 1 and 8 for each engine, in one run, and print tokens/s and ratios.

    Given a run, the ONNX bundles (fp32 and int8) are exported to a temporary folder first.
    Every engine continues the same full-window prompt; prefill is not timed. The onnx rows
    also show the wall time of a fresh process that opens the bundle and produces one token.
    Timings depend on what else runs on the machine: benchmark on a quiet one.
    """
    import contextlib
    import sys

    from seqgen.engine_speed import ENGINES, bench as run_bench, ratios
    from seqgen.errors import ConfigError
    from seqgen.runs import is_bundle, latest_run

    if threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {threads}")
    if run is None:
        run = latest_run()
    with contextlib.redirect_stdout(sys.stderr):
        rows = run_bench(run, tokens=tokens, batches=tuple(batch or (1, 8)), engines=tuple(engine or ENGINES),
                         threads=threads, log=log_line)
    if as_json:
        out.print(json.dumps([r.to_dict() for r in rows]), markup=False, highlight=False)
        return
    from rich.table import Table

    rel = ratios(rows)
    table = Table(title=f"generation speed: {run}{' (bundle)' if is_bundle(run) else ''}")
    for col in ("engine", "batch", "tokens/s", "vs torch", "vs naive", "first token (fresh process)"):
        table.add_column(col, justify="left" if col == "engine" else "right")
    for r in rows:
        vs = rel[(r.engine, r.batch)]
        table.add_row(r.engine, str(r.batch), f"{r.tokens_per_s:,.0f}",
                      f"{vs['torch']:.2f}x" if "torch" in vs else "",
                      f"{vs['torch-naive']:.1f}x" if "torch-naive" in vs else "",
                      f"{r.first_token_s:.2f}s" if r.first_token_s is not None else "")
    out.print(table)


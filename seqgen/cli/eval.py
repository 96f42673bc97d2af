"""seqgen eval: losses on the whole validation split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from seqgen.device import TRAIN_DEVICE
from seqgen.cli._util import corpus_feedback, err, out


def evaluate(
    run: Annotated[
        Optional[Path], typer.Argument(help="Run folder or checkpoint (default: the most recent run).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    last: Annotated[bool, typer.Option("--last", help="Evaluate the last checkpoint instead of the best.")] = False,
    corpus: Annotated[Optional[str], typer.Option(help="Corpus to evaluate on (default: the run's own).")] = None,
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu, cuda.")] = TRAIN_DEVICE,
    compositions: Annotated[
        int, typer.Option(help="Music runs: pieces composed to compare with the held-out ones.")
    ] = 8,
    check_copies: Annotated[
        bool,
        typer.Option(
            "--check-copies/--no-check-copies",
            help="Check the run's compositions (or 8 samples of 500 characters) for copies of its training data.",
        ),
    ] = True,
) -> None:
    """Evaluate a run on its whole validation split (the last --val-fraction of the corpus).

    [bold]val_loss[/]: nats per token over the whole validation split, read in order with the
    state carried: recurrent models carry their hidden state over the whole text, the
    transformer slides its attention window (KV cache) along it, so every token is predicted
    from earlier validation text only. [bold]val_loss_windowed[/]: nanoGPT's method,
    consecutive 64-token windows each read from empty context. [bold]infill_loss[/]: nats per
    token on the middle span of 512 seeded fill-in-the-middle examples (runs trained with infill).
    [bold]val_loss_reset[/]: the same text with the state reset every 2,048 tokens;
    [bold]val_loss_by_segment[/]: the carried reading's loss per 2,000 tokens (flat when the state
    does not drift). Bits per token are nats / ln 2. Music runs: [bold]val_bits_per_note[/], the
    split's total loss in bits over its [bold]val_notes[/] notes (comparable across tokenizers).
    When val_loss is above the windowed loss (more context makes the model worse: a recurrent
    model's carried state drifts), a note on stderr says so.
    """
    from seqgen.errors import ConfigError
    from seqgen.evaluate import evaluate_run

    if compositions < 1:
        raise ConfigError(f"--compositions must be at least 1, got {compositions}")
    with corpus_feedback() as feedback:
        result = evaluate_run(run, which="last" if last else "best", corpus=corpus, device=device,
                              compositions=compositions, copies=check_copies, **feedback)
    if result["val_loss"] > result["val_loss_windowed"]:
        err.print("[yellow]note:[/] val_loss is above the windowed loss: this model drifts over long texts "
                  "(reading more context makes it worse); very long samples may degrade", soft_wrap=True)
    if as_json:
        out.print(json.dumps(result), markup=False, highlight=False)
        return
    for key, value in _flat(result):
        if isinstance(value, list) and value:
            value = f"{len(value)} values, first {value[0]:.4f}, last {value[-1]:.4f}, highest {max(value):.4f}"
        out.print(f"{key:>32}  {value:.4f}" if isinstance(value, float) else f"{key:>32}  {value}", markup=False)


def _flat(d: dict, prefix: str = ""):
    for key, value in d.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value

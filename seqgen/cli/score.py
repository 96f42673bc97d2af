"""seqgen score: how likely a text is under a model, in nats and bits per character."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from seqgen.cli._options import GENERATE_DEVICE, GENERATE_THREADS, Device, RunArg, Threads
from seqgen.cli._util import out


def score(
    run: RunArg,
    file: Annotated[Path, typer.Argument(help="UTF-8 text file to score ('-' reads stdin).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    device: Device = GENERATE_DEVICE,
    threads: Threads = GENERATE_THREADS,
) -> None:
    """Score a text: its loss under the model, in nats and bits per character.

    The text is read in order with the state carried; the first character is context only,
    every later one is predicted from all before it. Lower is more like the training text: a
    way to compare models on the same text, or texts under one model (out-of-domain text
    scores high). Works on a run folder, a checkpoint or an ONNX bundle (no torch).
    """
    import sys

    from seqgen.engines.load import open_generator
    from seqgen.errors import SeqgenError
    from seqgen.scoring import score_text

    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SeqgenError(f"cannot read {file}: {e}") from None
    gen = open_generator(run, device=device, threads=threads)
    result = {"file": str(file), **score_text(gen, text)}
    if as_json:
        out.print(json.dumps(result), markup=False, highlight=False)
        return
    out.print(f"{result['nats_per_char']:.4f} nats/char  {result['bits_per_char']:.4f} bits/char  "
              f"perplexity {result['perplexity']:.2f}  ({result['predicted']:,} characters predicted, "
              f"{result['model']} {result['source']})", markup=False, highlight=False)

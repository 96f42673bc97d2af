"""seqgen infill: write the middle between a prefix and a suffix."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from seqgen.cli._copies import CheckCopies, check
from seqgen.cli._options import (DEFAULTS, GENERATE_DEVICE, GENERATE_THREADS, Device, Logprobs, MinP,
                                 NoRepeatNgram, RepeatWindow, RepetitionPenalty, Seed, Stop, Temp, Threads, TopK,
                                 TopP, sampling_options, unescape)


def infill(
    run: Annotated[Path, typer.Argument(help="Run folder, checkpoint or ONNX bundle trained with infilling.")],
    prefix: Annotated[str, typer.Option(help="Text before the gap.")] = "",
    suffix: Annotated[str, typer.Option(help="Text after the gap.")] = "",
    max_length: Annotated[int, typer.Option(help="Longest middle to write, in tokens.")] = 200,
    temp: Temp = DEFAULTS.temperature,
    top_k: TopK = DEFAULTS.top_k,
    top_p: TopP = DEFAULTS.top_p,
    min_p: MinP = DEFAULTS.min_p,
    repetition_penalty: RepetitionPenalty = DEFAULTS.repetition_penalty,
    repeat_window: RepeatWindow = DEFAULTS.repeat_window,
    no_repeat_ngram: NoRepeatNgram = DEFAULTS.no_repeat_ngram,
    stop: Stop = None,
    num: Annotated[int, typer.Option(help="Number of candidate middles.")] = 1,
    seed: Seed = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print JSON with prefix, middle, suffix, finish_reason (stop or length) and stop.")] = False,
    logprobs: Logprobs = False,
    check_copies: CheckCopies = None,
    device: Device = GENERATE_DEVICE,
    threads: Threads = GENERATE_THREADS,
) -> None:
    """Fill in the middle: print what goes between --prefix and --suffix."""
    import numpy as np

    from seqgen.engines.load import open_generator
    from seqgen.errors import ConfigError
    from seqgen.sampling import check_stops, infill_text, require_infill

    options = sampling_options(temp, top_k, top_p, min_p, repetition_penalty, repeat_window, no_repeat_ngram)
    stops = check_stops([unescape(s) for s in stop or ()])
    if max_length < 1 or num < 1:
        raise ConfigError(f"--max-length and --num must be at least 1, got {max_length} and {num}")
    if logprobs and not as_json:
        raise ConfigError("--logprobs goes with --json (the log-probabilities are printed in the JSON)")
    gen = open_generator(run, device=device, threads=threads)
    require_infill(gen)
    tok = gen.tokenizer
    middles = infill_text(gen, tok.encode(prefix), tok.encode(suffix), max_length, options,
                          np.random.default_rng(seed), batch=num, stops=stops, logprobs=logprobs)
    copies = check(gen, check_copies, [m.text for m in middles])  # the middles: the prefix and suffix are the user's
    if as_json:
        rows = []
        for i, m in enumerate(middles):
            row = {"prefix": prefix, "middle": m.text, "suffix": suffix, "finish_reason": m.finish_reason,
                   "stop": m.stop}
            if m.logprobs is not None:
                row["logprobs"] = m.logprobs
            if copies is not None:
                row["copies"] = copies[i]
            rows.append(row)
        sys.stdout.write(json.dumps(rows[0] if num == 1 else rows, ensure_ascii=False) + "\n")
        return
    for i, m in enumerate(middles):
        if i:
            sys.stdout.write("\n" + "-" * 40 + "\n")
        sys.stdout.write(m.text + "\n")

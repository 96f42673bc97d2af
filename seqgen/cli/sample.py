"""seqgen sample: generate text from a run or an ONNX bundle, streamed to stdout."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from seqgen.cli._copies import CheckCopies
from seqgen.cli._copies import check as check_copies_of
from seqgen.cli._options import (DEFAULTS, GENERATE_DEVICE, GENERATE_THREADS, Device, Logprobs, MinP,
                                 NoRepeatNgram, RepeatWindow, RepetitionPenalty, RunArg, Seed, Stop, Temp, Threads,
                                 TopK, TopP, sampling_options, unescape)


def sample(
    run: RunArg = None,
    prompt: Annotated[Optional[str], typer.Option(help="Text to continue (default: a newline).")] = None,
    prompt_file: Annotated[Optional[Path], typer.Option(help="Read the prompt from this UTF-8 file.")] = None,
    length: Annotated[int, typer.Option(help="Tokens to generate per sample.")] = 500,
    temp: Temp = DEFAULTS.temperature,
    top_k: TopK = DEFAULTS.top_k,
    top_p: TopP = DEFAULTS.top_p,
    min_p: MinP = DEFAULTS.min_p,
    repetition_penalty: RepetitionPenalty = DEFAULTS.repetition_penalty,
    repeat_window: RepeatWindow = DEFAULTS.repeat_window,
    no_repeat_ngram: NoRepeatNgram = DEFAULTS.no_repeat_ngram,
    stop: Stop = None,
    num: Annotated[int, typer.Option(help="Number of samples.")] = 1,
    seed: Seed = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print a JSON list, one object per sample: text, finish_reason (stop or length), stop, "
                       "and the copy check.")] = False,
    logprobs: Logprobs = False,
    check_copies: CheckCopies = None,
    interactive: Annotated[bool, typer.Option(
        "--interactive", "-i", help="Load once, then read prompts line by line and stream each answer "
                                    "(/help lists the commands; Ctrl-D ends).")] = False,
    device: Device = GENERATE_DEVICE,
    threads: Threads = GENERATE_THREADS,
) -> None:
    """Sample text, streaming it to stdout as it is generated."""
    import numpy as np

    from seqgen.engines.load import open_generator
    from seqgen.errors import ConfigError, SeqgenError
    from seqgen.sampling import check_stops, complete_text

    options = sampling_options(temp, top_k, top_p, min_p, repetition_penalty, repeat_window, no_repeat_ngram)
    stops = check_stops([unescape(s) for s in stop or ()])
    if length < 1 or num < 1:
        raise ConfigError(f"--length and --num must be at least 1, got {length} and {num}")
    if prompt is not None and prompt_file is not None:
        raise ConfigError("give --prompt or --prompt-file, not both")
    if logprobs and not as_json:
        raise ConfigError("--logprobs goes with --json (the log-probabilities are printed in the JSON)")
    if interactive and (as_json or prompt is not None or prompt_file is not None or num != 1):
        raise ConfigError("--interactive reads its prompts from the terminal: drop --json, --prompt, --prompt-file "
                          "and --num")
    if prompt_file is not None:
        try:
            prompt = prompt_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise SeqgenError(f"cannot read prompt file {prompt_file}: {e}") from None
    gen = open_generator(run, device=device, threads=threads)
    tok = gen.tokenizer
    if tok.kind != "text":
        raise SeqgenError(f"{gen.source} is a music model; use `seqgen compose` to write MIDI")
    rng = np.random.default_rng(seed)
    if interactive:
        from seqgen.cli.interactive import prompt_loop

        prompt_loop(gen, options, length, stops, rng)
        return
    text = prompt if prompt else tok.default_prompt()
    ids = tok.encode(text)
    write = sys.stdout.write

    def stream(_row: int, piece: str) -> None:
        write(piece)
        sys.stdout.flush()

    results = []
    for i in range(num):
        if as_json:
            results += complete_text(gen, ids, length, options, rng, stops=stops, logprobs=logprobs)
            continue
        if i:
            write("\n" + "-" * 40 + "\n")
        write(prompt or "")
        results += complete_text(gen, ids, length, options, rng, stops=stops, on_text=stream)
        write("\n")
    sys.stdout.flush()
    copies = check_copies_of(gen, check_copies, [r.text for r in results])  # the prompt is the user's
    if as_json:
        write(json.dumps(sample_objects(prompt or "", results, copies), ensure_ascii=False) + "\n")
    sys.stdout.flush()


def sample_objects(prompt: str, results, copies: list[dict] | None = None) -> list[dict]:
    """What ``--json`` prints: one object per sample (``text`` is the continuation, without the
    prompt), with the copy check's ``copies`` where it ran."""
    rows = []
    for i, r in enumerate(results):
        row = {"prompt": prompt, "text": r.text, "finish_reason": r.finish_reason, "stop": r.stop}
        if r.logprobs is not None:
            row["logprobs"] = r.logprobs
        if copies is not None:
            row["copies"] = copies[i]
        rows.append(row)
    return rows

"""seqgen sample: generate text from a run or an ONNX bundle, streamed to stdout."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from seqgen.cli._copies import CheckCopies, finish_samples
from seqgen.cli._options import (DEFAULT_TEMPERATURE, GENERATE_DEVICE, GENERATE_THREADS, Device, RunArg, Seed,
                                 Temp, Threads, TopK, TopP)


def sample(
    run: RunArg = None,
    prompt: Annotated[Optional[str], typer.Option(help="Text to continue (default: a newline).")] = None,
    prompt_file: Annotated[Optional[Path], typer.Option(help="Read the prompt from this UTF-8 file.")] = None,
    length: Annotated[int, typer.Option(help="Tokens to generate per sample.")] = 500,
    temp: Temp = DEFAULT_TEMPERATURE,
    top_k: TopK = None,
    top_p: TopP = None,
    num: Annotated[int, typer.Option(help="Number of samples.")] = 1,
    seed: Seed = None,
    check_copies: CheckCopies = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (the samples, and the copy check) instead of streaming text.")] = False,
    device: Device = GENERATE_DEVICE,
    threads: Threads = GENERATE_THREADS,
) -> None:
    """Sample text, streaming it to stdout as it is generated."""
    import numpy as np

    from seqgen.engines.load import open_generator
    from seqgen.errors import ConfigError, SeqgenError
    from seqgen.sampling import check_options, complete

    check_options(temp, top_k, top_p)
    if length < 1 or num < 1:
        raise ConfigError(f"--length and --num must be at least 1, got {length} and {num}")
    if prompt is not None and prompt_file is not None:
        raise ConfigError("give --prompt or --prompt-file, not both")
    if prompt_file is not None:
        try:
            prompt = prompt_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise SeqgenError(f"cannot read prompt file {prompt_file}: {e}") from None
    gen = open_generator(run, device=device, threads=threads)
    tok = gen.tokenizer
    if tok.kind != "text":
        raise SeqgenError(f"{gen.source} is a music model; use `seqgen compose` to write MIDI")
    text = prompt if prompt else tok.default_prompt()
    ids = tok.encode(text)
    rng = np.random.default_rng(seed)
    write = (lambda _: None) if as_json else sys.stdout.write
    texts = []
    for i in range(num):
        if i:
            write("\n" + "-" * 40 + "\n")
        write(prompt or "")
        texts.append("")
        for step in complete(gen, ids, length, temp, top_k, top_p, rng):
            texts[-1] += tok.decode(step)
            write(tok.decode(step))
            sys.stdout.flush()
        write("\n")
    sys.stdout.flush()
    finish_samples(gen, check_copies, texts, as_json, prompt=prompt or "")

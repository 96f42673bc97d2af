"""seqgen sample: generate text from a run or an ONNX bundle, streamed to stdout."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from seqgen.device import GENERATE_DEVICE, GENERATE_THREADS


def sample(
    run: Annotated[Optional[Path], typer.Argument(help="Run folder, checkpoint or ONNX bundle (default: the most recent run).")] = None,
    prompt: Annotated[Optional[str], typer.Option(help="Text to continue (default: a newline).")] = None,
    prompt_file: Annotated[Optional[Path], typer.Option(help="Read the prompt from this UTF-8 file.")] = None,
    length: Annotated[int, typer.Option(help="Tokens to generate per sample.")] = 500,
    temp: Annotated[float, typer.Option(help="Temperature; 0 means greedy (always the most likely token).")] = 1.0,
    top_k: Annotated[Optional[int], typer.Option(help="Sample only from the k most likely tokens.")] = None,
    top_p: Annotated[Optional[float], typer.Option(help="Sample only from the smallest set of tokens whose probability reaches p.")] = None,
    num: Annotated[int, typer.Option(help="Number of samples.")] = 1,
    seed: Annotated[Optional[int], typer.Option(help="Random seed: the same seed repeats the output.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda (generation defaults to the CPU: see seqgen.device).")] = GENERATE_DEVICE,
    threads: Annotated[int, typer.Option(help="CPU threads for torch (one is fastest for one-token steps).")] = GENERATE_THREADS,
) -> None:
    """Sample text, streaming it to stdout as it is generated."""
    import numpy as np

    from seqgen.device import set_threads
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
    gen = open_generator(run, device=device)
    set_threads(threads)
    tok = gen.tokenizer
    if tok.kind != "text":
        raise SeqgenError(f"{gen.source} is a music model; use `seqgen compose` to write MIDI")
    text = prompt if prompt else tok.default_prompt()
    ids = tok.encode(text)
    rng = np.random.default_rng(seed)
    write = sys.stdout.write
    for i in range(num):
        if i:
            write("\n" + "-" * 40 + "\n")
        write(prompt or "")
        for step in complete(gen, ids, length, temp, top_k, top_p, rng):
            write(tok.decode(step))
            sys.stdout.flush()
        write("\n")
    sys.stdout.flush()

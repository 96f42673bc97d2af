"""seqgen infill: write the middle between a prefix and a suffix."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from seqgen.cli._copies import CheckCopies, check
from seqgen.cli._options import DEFAULT_TEMPERATURE, GENERATE_DEVICE, GENERATE_THREADS, Device, Seed, Temp, Threads, TopK, TopP


def infill(
    run: Annotated[Path, typer.Argument(help="Run folder, checkpoint or ONNX bundle trained with infilling.")],
    prefix: Annotated[str, typer.Option(help="Text before the gap.")] = "",
    suffix: Annotated[str, typer.Option(help="Text after the gap.")] = "",
    max_length: Annotated[int, typer.Option(help="Longest middle to write, in tokens.")] = 200,
    temp: Temp = DEFAULT_TEMPERATURE,
    top_k: TopK = None,
    top_p: TopP = None,
    num: Annotated[int, typer.Option(help="Number of candidate middles.")] = 1,
    seed: Seed = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON with prefix, middle and suffix.")] = False,
    check_copies: CheckCopies = None,
    device: Device = GENERATE_DEVICE,
    threads: Threads = GENERATE_THREADS,
) -> None:
    """Fill in the middle: print what goes between --prefix and --suffix."""
    import numpy as np

    from seqgen.engines.load import open_generator
    from seqgen.errors import ConfigError
    from seqgen.sampling import check_options, require_infill
    from seqgen.sampling import infill as fill

    check_options(temp, top_k, top_p)
    if max_length < 1 or num < 1:
        raise ConfigError(f"--max-length and --num must be at least 1, got {max_length} and {num}")
    gen = open_generator(run, device=device, threads=threads)
    require_infill(gen)
    tok = gen.tokenizer
    middles = fill(gen, tok.encode(prefix), tok.encode(suffix), max_length, temp, top_k, top_p,
                   np.random.default_rng(seed), batch=num)
    texts = [tok.decode(m) for m in middles]
    copies = check(gen, check_copies, texts)  # the middles: the prefix and suffix are the user's
    if as_json:
        rows = [{"prefix": prefix, "middle": t, "suffix": suffix} for t in texts]
        for row, c in zip(rows, copies or []):
            row["copies"] = c
        sys.stdout.write(json.dumps(rows[0] if num == 1 else rows, ensure_ascii=False) + "\n")
        return
    for i, t in enumerate(texts):
        if i:
            sys.stdout.write("\n" + "-" * 40 + "\n")
        sys.stdout.write(t + "\n")

"""The copy check as ``sample``, ``infill`` and ``compose`` run it: one option, one call."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from seqgen.cli._util import err

CheckCopies = Annotated[Optional[bool], typer.Option(
    "--check-copies/--no-check-copies",
    help="Report the longest stretch of the output found in the training data, and the share of its "
         "patterns found there (default: on when the training corpus is at hand and under 20M tokens).")]


def corpus_of(gen) -> dict:
    """What a generator records of its training corpus: spec, encoding, val_fraction, split."""
    ckpt = gen.info.get("checkpoint")
    if ckpt is not None:
        return {"spec": ckpt.corpus, "encoding": ckpt.encoding,
                "val_fraction": ckpt.train.val_fraction, "split": ckpt.train.split}
    return dict((gen.info.get("bundle") or {}).get("corpus") or {})


def open_index(gen, wanted: bool | None):
    """The generator's copy index, or None when not wanted or (by default) not at hand; an
    explicit --check-copies that cannot be honoured is an error."""
    if wanted is False:
        return None
    from seqgen.copies import run_index
    from seqgen.errors import SeqgenError

    c = corpus_of(gen)
    index, why = run_index(c.get("spec"), gen.tokenizer, float(c.get("val_fraction") or 0.1), c.get("split") or "auto",
                           c.get("encoding") or "utf-8")
    if index is None:
        if wanted:
            raise SeqgenError(f"--check-copies: {why}")
        err.print(f"[dim]no copy check: {why}[/]")
    return index


def check(gen, wanted: bool | None, samples: list) -> list[dict] | None:
    """Check each sample (text, text ids or a Piece) against the training data; print one line
    per sample on stderr; return the ``copies`` objects for --json (None when not checked)."""
    from seqgen.copies import text_ids

    index = open_index(gen, wanted)
    if index is None:
        return None
    rows = []
    for s in samples:
        result = index.check(text_ids(gen.tokenizer, s) if isinstance(s, str) else s)
        err.print(f"[dim]{result.summary()}[/]", soft_wrap=True)
        rows.append(result.to_dict())
    return rows


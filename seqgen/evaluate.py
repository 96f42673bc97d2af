"""``seqgen eval``: every loss of a run on the whole validation split of its corpus, and for
music runs, statistics of compositions against the held-out pieces."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seqgen.checkpoint import open_checkpoint, run_data
from seqgen.compose import fresh_prompt, grammar_options, sample_bars
from seqgen.data.load import Progress
from seqgen.data.music import Report, held_out_pieces
from seqgen.device import TRAIN_DEVICE
from seqgen.engines.base import Generator
from seqgen.engines.torch_engine import TorchEngine
from seqgen.losses import bits, infill_loss, segment_losses, token_losses, windowed_loss
from seqgen.music.metrics import bar_spans, compare_sets
from seqgen.music.stats import compare, piece_stats, summarize
from seqgen.objectives import FimIds

RESET = 2048  # tokens between state resets in val_loss_reset
SEGMENT = 2000  # tokens per value of val_loss_by_segment


def evaluate_run(run: Path | None, which: str = "best", corpus: str | None = None, device: str = TRAIN_DEVICE,
                 infill_examples: int = 512, compositions: int = 8, progress: Progress | None = None,
                 report: Report | None = None, copies: bool = True) -> dict:
    """Every loss of a run on the whole validation split of its corpus, as a JSON-able dict."""
    ckpt = open_checkpoint(run, which, device=device)
    dev = next(ckpt.model.parameters()).device
    path = ckpt.path
    data, parts = run_data(ckpt, corpus, progress=progress, report=report)
    val = parts.val
    model = ckpt.model
    window = ckpt.train.window

    def step(task: str):  # the losses as tasks of the caller's progress display
        return None if progress is None else (lambda done, total: progress(task, done, total))

    carried = token_losses(model, val, chunk=window, device=dev, done=step("loss, state carried"))
    reset = token_losses(model, val, chunk=window, device=dev, streams=max(1, (len(val) - 1) // RESET),
                         done=step(f"loss, state reset every {RESET} tokens"))
    loss = float(carried.mean())
    result = {
        "val_loss": loss,
        "val_bits_per_token": bits(loss),
        "val_loss_windowed": windowed_loss(model, val, window=64, device=dev, done=step("loss, 64-token windows")),
        # the same text with the state reset every RESET tokens: a carried state that drifts is worse
        "val_loss_reset": float(reset.mean()),
        "val_loss_by_segment": [round(x, 4) for x in segment_losses(carried, SEGMENT)],
        # carried minus reset, per segment: rises along the text when the carried state drifts
        "val_drift_by_segment": [round(x, 4) for x in segment_losses(carried[: len(reset)] - reset, SEGMENT)],
        "tokens": int(len(val)),
        "step": ckpt.step,
        "model": model.config.to_dict()["type"],
        "params": model.num_params(),
        "objective": ckpt.train.objective,
        "checkpoint": str(path),
        "split": parts.mode,
        "held_out_documents": len(parts.held_out),
    }
    if ckpt.tokenizer.kind == "music":
        result.update(per_note(carried, val, ckpt.tokenizer))
    if ckpt.train.objective != "causal" and len(val) > window:
        result["infill_loss"] = infill_loss(model, val, FimIds.of(ckpt.tokenizer), window=window,
                                            examples=infill_examples, device=dev, done=step("infill loss"))
    made: list = []
    held: list = []
    if ckpt.tokenizer.kind == "music":
        stats, made, held = music_statistics(ckpt.tokenizer, model, val, ckpt, device=dev, compositions=compositions)
        result.update(stats)
    if copies:
        result["copies"] = copy_figures(data, ckpt, model, dev, made, held, val, samples=compositions)
    return result


def per_note(losses: np.ndarray, tokens: np.ndarray, tokenizer) -> dict:
    """The split's total loss over its notes (Pitch and Drum tokens among those predicted), in
    bits: comparable across tokenizers that spell the same notes with different tokens."""
    predicted = np.asarray(tokens[1 : len(losses) + 1])
    kinds = tokenizer.kinds_of(predicted)
    notes = int(np.isin(kinds, [tokenizer.kind_index("Pitch"), tokenizer.kind_index("Drum")]).sum())
    total = float(np.sum(losses, dtype=np.float64))
    return {"val_notes": notes, "val_bits_per_note": bits(total) / notes if notes else None}


def copy_figures(data, ckpt, model, device, compositions: list, held: list, val: np.ndarray, samples: int = 8,
                 length: int = 500, seed: int = 0) -> dict:
    """The copy check of the run's own output: its compositions (music), or ``samples`` samples of
    ``length`` characters from the default prompt (text); the longest stretch found in training,
    where, and the mean share of patterns. ``held_out`` is the same check of held-out data of the
    same size (pieces cut to the compositions' bars, or stretches of the validation text): what
    a corpus shares with itself without any copying, to read the run's figures against."""
    from seqgen.copies import MAX_INDEX_TOKENS, training_index
    from seqgen.sampling import complete

    if len(data) > MAX_INDEX_TOKENS:
        return {"checked": 0, "why": f"the corpus has more than {MAX_INDEX_TOKENS:,} tokens"}
    index = training_index(data, ckpt.train.val_fraction, ckpt.train.split)
    tok = ckpt.tokenizer
    if tok.kind == "music":
        outputs, reference = compositions, held
    else:
        gen = Generator(
            TorchEngine(model, device), tok, model.config.to_dict()["type"], ckpt.train.objective, source=None
        )
        steps = list(complete(gen, tok.encode(tok.default_prompt()), length, 1.0, None, None,
                              np.random.default_rng(seed), batch=samples))
        outputs = list(np.stack(steps, axis=1))  # (samples, length)
        starts = np.linspace(0, max(0, len(val) - length), samples).astype(int)
        reference = [np.asarray(val[a : a + length], dtype=np.int64) for a in starts]
    result = _figures([index.check(o) for o in outputs])
    if result["checked"]:
        result["held_out"] = _figures([index.check(r) for r in reference])
    return result


def _figures(found: list) -> dict:
    if not found:
        return {"checked": 0}
    best = max(found, key=lambda c: c.longest)
    return {"checked": len(found), "unit": best.unit, "longest": best.longest, "where": best.where,
            "longest_mean": round(float(np.mean([c.longest for c in found])), 2),
            "share": round(float(np.mean([c.share for c in found])), 4), "span": best.span}


def _first_bars(piece, bars: int):
    """``piece`` up to the end of bar ``bars``."""
    spans = bar_spans(piece)
    return piece if len(spans) <= bars else piece.select(piece.time < spans[bars][0])


def music_statistics(tokenizer, model, val: np.ndarray, ckpt, device="cpu", compositions: int = 8, bars: int = 8,
                     seed: int = 0) -> tuple[dict, list, list]:
    """For ``seqgen eval``: compositions sampled from ``model`` against the held-out pieces (and
    the compositions, and the held-out pieces cut to as many bars)."""
    pieces = held_out_pieces(val, 0) or [np.asarray(val, dtype=np.int64)]
    held = [tokenizer.decode(ids) for ids in pieces]
    bars_seen = sum(p.info["bars"] for p in held)
    per_bar = sum(len(ids) for ids in pieces) / max(1, bars_seen)
    gen = Generator(TorchEngine(model, device), tokenizer, model.config.to_dict()["type"], ckpt.train.objective,
                    source=None)
    prompt = fresh_prompt(tokenizer)
    rows = sample_bars(
        gen,
        prompt,
        bars - len(tokenizer.bar_indices(prompt)),
        temperature=1.0,
        rng=np.random.default_rng(seed),
        batch=compositions,
        max_tokens=int(bars * max(256, 2 * per_bar)),
        grammar=grammar_options(),  # as `seqgen compose` writes them
    )
    made = [tokenizer.decode(r) for r in rows]
    gen_stats = [piece_stats(p) for p in made]
    ref_stats = [piece_stats(p) for p in held]
    return {"music": {
        "compositions": compositions, "bars": bars, "held_out_pieces": len(held),
        "generated": summarize(gen_stats), "held_out": summarize(ref_stats),
        "distance": compare(gen_stats, ref_stats),
        "grammar_repairs": int(sum(p.info["dropped_tokens"] + p.info["notes_cut"] for p in made)),
        "literature": compare_sets(made, held),  # MusPy's measures, and their overlap per bar
    }}, made, [_first_bars(p, bars) for p in held]

"""seqgen train: train a generator on a corpus, with a progress bar; saves runs/<name>/."""

from __future__ import annotations

import math
import shlex
from pathlib import Path
from typing import Annotated, Optional

import typer

from seqgen.cli._util import err, handle_errors
from seqgen.config import BATCHING, MODEL_TYPES, OBJECTIVES, SIZES, TrainConfig

D = TrainConfig()  # defaults live in the config dataclass
DEFAULT_TIME = "5m"


class ProgressCallback:
    """Draws a rich progress bar on stderr: step, loss, validation bits/token, tokens/s, time left."""

    def __init__(self, quiet: bool):
        from rich.progress import BarColumn, Progress, TextColumn

        self.quiet = quiet
        self.progress = Progress(
            TextColumn("[bold]{task.fields[step]:>6}[/]"), BarColumn(bar_width=24),
            TextColumn("{task.percentage:>3.0f}%"), TextColumn("{task.fields[stats]}"),
            console=err, transient=False, disable=quiet, refresh_per_second=4,
        )
        self.task = None
        self.last_val = None

    def on_start(self, info):
        if not self.quiet:
            cfg = info["config"]
            mode = "truncated BPTT" if info["stream"] else "random windows"
            err.print(
                f"[dim]{cfg.model} ({info['params']:,} parameters) on {info['device']}, "
                f"{info['train_tokens']:,} training / {info['val_tokens']:,} validation tokens, "
                f"objective {cfg.objective}, batch {cfg.batch} x {cfg.window} ({mode})[/]"
            )
        self.progress.start()
        self.task = self.progress.add_task("train", total=1.0, step=info["step"], stats="")

    def on_step(self, info):
        if self.quiet:
            return
        left = info["elapsed"] / max(info["progress"], 1e-9) * (1 - info["progress"]) if info["progress"] > 0 else 0
        val = f"val {self.last_val / math.log(2):.3f} bits" if self.last_val is not None else "val -"
        stats = (f"loss {info['loss']:.3f}  {val}  {info['tokens_per_s']:,.0f} tok/s  "
                 f"{_clock(left)} left")
        self.progress.update(self.task, completed=info["progress"], step=info["step"], stats=stats)

    def on_eval(self, info):
        self.last_val = info["val_loss"]

    def stop(self):
        self.progress.stop()


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


@handle_errors
def train(
    corpus: Annotated[str, typer.Argument(help="A UTF-8 text file, a folder of text or music files, or a built-in corpus (see `seqgen corpus list`).")],
    out: Annotated[Optional[Path], typer.Option(help="Run folder (default: runs/<corpus name>).")] = None,
    model: Annotated[str, typer.Option(help=f"Model: {', '.join(MODEL_TYPES)}.")] = D.model,
    size: Annotated[Optional[str], typer.Option(help=f"Size preset: {', '.join(SIZES)} (default: chosen for the model).")] = None,
    layers: Annotated[Optional[int], typer.Option(help="Layers (overrides the size preset).")] = None,
    dim: Annotated[Optional[int], typer.Option(help="Hidden / model width (overrides the preset).")] = None,
    heads: Annotated[Optional[int], typer.Option(help="Attention heads (transformer).")] = None,
    emb_dim: Annotated[Optional[int], typer.Option(help="Embedding width (recurrent models).")] = None,
    attn_score: Annotated[str, typer.Option(help="Luong score for lstm-attn: dot, general, concat.")] = D.attn_score,
    objective: Annotated[str, typer.Option(help=f"Objective: {', '.join(OBJECTIVES)} (mixed: a share --fim-rate of examples fill in a middle).")] = D.objective,
    fim_rate: Annotated[float, typer.Option(help="Share of fill-in-the-middle examples with --objective mixed.")] = D.fim_rate,
    time: Annotated[Optional[str], typer.Option("--time", help=f"Wall-clock budget, e.g. 90s, 3m, 1h (default {DEFAULT_TIME} unless --steps).")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Train for this many optimizer steps (total, when resuming).")] = None,
    batch: Annotated[Optional[int], typer.Option(help="Sequences per batch (default: chosen for the model).")] = None,
    window: Annotated[int, typer.Option(help="Tokens per training window (the transformer's attention span).")] = D.window,
    batching: Annotated[str, typer.Option(help=f"{', '.join(BATCHING)}: stream = truncated BPTT with the state carried (recurrent models), random = independent windows.")] = D.batching,
    lr: Annotated[Optional[float], typer.Option(help="Peak learning rate (default: per model).")] = None,
    dropout: Annotated[float, typer.Option(help="Dropout probability.")] = D.dropout,
    grad_clip: Annotated[float, typer.Option(help="Clip the gradient norm to this value.")] = D.grad_clip,
    warmup: Annotated[int, typer.Option(help="Steps of linear learning-rate warmup.")] = D.warmup,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay (matrices only).")] = D.weight_decay,
    val_fraction: Annotated[float, typer.Option(help="Last share of the token stream held out for validation.")] = D.val_fraction,
    seed: Annotated[int, typer.Option(help="Random seed (repeatable on the same machine).")] = D.seed,
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu, cuda, cuda:N.")] = D.device,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch (default: torch's choice).")] = None,
    transpose: Annotated[Optional[str], typer.Option(help="Music: transposition augmentation range in semitones, e.g. -5..6.")] = None,
    encoding: Annotated[str, typer.Option(help="Text encoding of the corpus.")] = "utf-8",
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out where it stopped.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar; only the summary line.")] = False,
) -> None:
    """Train a generator on CORPUS. Ctrl-C saves a checkpoint and prints how to resume."""
    from seqgen.config import parse_duration
    from seqgen.errors import ConfigError

    seconds = parse_duration(time)
    if seconds is None and steps is None and not resume:
        seconds = parse_duration(DEFAULT_TIME)
    lo_hi = _transpose_range(transpose) if transpose else (0, 0)

    from seqgen import checkpoint as ckpt_io
    from seqgen.data import load_corpus
    from seqgen.runs import new_run_dir
    from seqgen.train import Trainer

    resumed = None
    if resume:
        if out is None:
            raise ConfigError("--resume needs --out RUN, the run folder to continue")
        if not (out / ckpt_io.LAST).exists():
            raise ConfigError(f"nothing to resume: {out / ckpt_io.LAST} does not exist")
        resumed = ckpt_io.load(out / ckpt_io.LAST)
        changes = {"device": device, "threads": threads}
        if seconds is not None or steps is not None:
            changes.update(time=None if seconds is None else resumed.elapsed + seconds, steps=steps)
        cfg = resumed.train.replace(**changes)
    else:
        cfg = TrainConfig(
            model=model, size=size, layers=layers, dim=dim, heads=heads, emb_dim=emb_dim, attn_score=attn_score,
            objective=objective, fim_rate=fim_rate, batch=batch, window=window, batching=batching, lr=lr,
            dropout=dropout, grad_clip=grad_clip, warmup=warmup, weight_decay=weight_decay, time=seconds,
            steps=steps, val_fraction=val_fraction, seed=seed, device=device, threads=threads, transpose=lo_hi,
        )
    data = load_corpus(corpus, encoding=encoding, tokenizer=resumed.tokenizer if resumed else None)
    if out is None:
        out = new_run_dir(data.source or "run")
    elif not resume and (out / ckpt_io.LAST).exists():
        raise ConfigError(f"{out} already holds a run; add --resume to continue it, or choose another --out")
    cb = ProgressCallback(quiet)
    trainer = Trainer(cfg, data, out, resume=resumed, callback=cb)
    try:
        result = trainer.run()
    finally:
        cb.stop()
    bits = f"{result.best_val_loss / math.log(2):.3f}" if result.best_val_loss is not None else "-"
    val = f"{result.best_val_loss:.4f}" if result.best_val_loss is not None else "-"
    err.print(
        f"step {result.step}  train loss {result.train_loss:.4f}  best val loss {val} nats "
        f"({bits} bits/token)  {result.tokens_per_s:,.0f} tok/s  {result.elapsed:.0f}s  -> {out}"
    )
    if result.interrupted:
        cmd = ["seqgen", "train", corpus, "--out", str(out), "--resume"]
        err.print(f"interrupted; checkpoint saved. Resume with:\n  {shlex.join(cmd)}")
        raise typer.Exit(130)


def _transpose_range(text: str) -> tuple[int, int]:
    from seqgen.errors import ConfigError

    try:
        lo, hi = (int(v) for v in text.replace("..", ":").split(":"))
    except ValueError:
        raise ConfigError(f"cannot read --transpose {text!r}; expected a range like -5..6") from None
    return lo, hi

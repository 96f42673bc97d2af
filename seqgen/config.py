"""The registry of model types, sizes and objectives, and the training configuration: one
dataclass that validates itself, round-trips through JSON, and carries each setting's default
and help text (``seqgen train`` builds its options from the fields).

It imports nothing heavy, so the CLI reads its defaults without loading torch.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from seqgen.errors import ConfigError


@dataclass(frozen=True)
class ModelSpec:
    """A model type: its size presets, and what seqgen picks when the user leaves it to seqgen."""

    name: str
    description: str
    presets: dict[str, dict[str, int]]
    auto_size: str
    auto_batch: int
    auto_lr: float


_RECURRENT = {"tiny": dict(layers=1, dim=64, emb_dim=32), "small": dict(layers=1, dim=256, emb_dim=64),
              "base": dict(layers=2, dim=512, emb_dim=128)}
# How the automatic sizes, batches and learning rates were measured: docs/defaults.md.
MODELS: dict[str, ModelSpec] = {m.name: m for m in (
    ModelSpec("rnn", "Elman RNN (tanh)", _RECURRENT, "small", 16, 5e-3),
    ModelSpec("gru", "GRU", _RECURRENT, "small", 16, 1e-2),
    ModelSpec("lstm", "LSTM", _RECURRENT, "small", 8, 1e-2),
    ModelSpec("lstm-attn", "LSTM with Luong attention over its own earlier states",
              {"tiny": dict(layers=1, dim=32, emb_dim=16), "small": dict(layers=1, dim=256, emb_dim=64),
               "base": dict(layers=2, dim=384, emb_dim=128)}, "small", 16, 5e-3),
    ModelSpec("transformer", "GPT-style decoder: pre-norm, rotary positions, sliding KV cache",
              {"tiny": dict(layers=1, dim=32, heads=2), "small": dict(layers=4, dim=128, heads=4),
               "base": dict(layers=6, dim=256, heads=8)}, "small", 16, 1e-3),
)}
MODEL_TYPES = tuple(MODELS)
SIZES = ("tiny", "small", "base")
OBJECTIVES = ("causal", "infill", "mixed")
BATCHING = ("auto", "stream", "random")
ATTN_SCORES = ("dot", "general", "concat")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SPLITS = ("auto", "tail", "documents")
DEFAULT_TEMPERATURE = 0.8  # one default for sample, infill, compose (llama.cpp's default too)


def parse_duration(text: str | None) -> float | None:
    """'90s', '3m', '1h30m', '45' (seconds) -> seconds."""
    if text is None:
        return None
    s = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", s):
        value = float(s)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*(h|m|min|s|sec)", s)
        if not parts or "".join(f"{a}{b}" for a, b in parts) != s.replace(" ", ""):
            raise ConfigError(f"cannot read duration {text!r}; expected e.g. 90s, 3m, 1h30m")
        scale = {"h": 3600, "m": 60, "min": 60, "s": 1, "sec": 1}
        value = sum(float(a) * scale[b] for a, b in parts)
    if value <= 0:
        raise ConfigError(f"duration must be positive, got {text!r}")
    return value


def option(default: Any, help: str, **cli: Any) -> Any:
    """A config field that is also a ``seqgen train`` option: its default and help live here once.
    ``cli`` may give ``flag`` (another option name), ``parse`` (text -> value, for a field whose
    command-line form is text, e.g. a duration) and ``resume`` (the option may change on --resume)."""
    return field(default=default, metadata={"help": help, **cli})


def parse_range(text: str | None) -> tuple[int, int] | None:
    """'-5..6' or '-5:6' -> (-5, 6)."""
    if text is None:
        return None
    try:
        lo, hi = (int(v) for v in str(text).replace("..", ":").split(":"))
    except ValueError:
        raise ConfigError(f"cannot read range {text!r}; expected a range like -5..6") from None
    return lo, hi


_ = ", ".join


@dataclass
class TrainConfig:
    model: str = option("lstm", f"Model: {_(MODEL_TYPES)}.")
    size: str | None = option(None, f"Size preset: {_(SIZES)} (default: chosen for the model).")
    layers: int | None = option(None, "Layers (overrides the size preset).")
    dim: int | None = option(None, "Hidden / model width (overrides the preset).")
    heads: int | None = option(None, "Attention heads (transformer).")
    emb_dim: int | None = option(None, "Embedding width (recurrent models).")
    attn_score: str = option("general", f"Luong score for lstm-attn: {_(ATTN_SCORES)}.")
    objective: str = option("mixed", f"Objective: {_(OBJECTIVES)} (mixed: a share --fim-rate of examples "
                                     "fill in a middle).")
    fim_rate: float = option(0.5, "Share of fill-in-the-middle examples with --objective mixed.")
    batch: int | None = option(None, "Sequences per batch (default: chosen for the model).")
    window: int = option(128, "Tokens per training window (the transformer's attention span).")
    batching: str = option("auto", f"{_(BATCHING)}: stream = truncated BPTT with the state carried "
                                   "(recurrent models), random = independent windows.")
    lr: float | None = option(None, "Peak learning rate (default: per model).")
    min_lr_ratio: float = option(0.05, "The learning rate decays (cosine) to this share of the peak.")
    warmup: int = option(100, "Steps of linear learning-rate warmup.")
    weight_decay: float | None = option(None, "AdamW weight decay, matrices only (default: chosen from the corpus "
                                               "and the budget).")
    grad_clip: float = option(1.0, "Clip the gradient norm to this value.")
    dropout: float | None = option(None, "Dropout probability (default: chosen from the corpus and the budget).")
    time: float | None = option(None, "Wall-clock budget, e.g. 90s, 3m, 1h (default 5m unless --steps).",
                                parse=lambda text: parse_duration(text), resume=True)
    steps: int | None = option(None, "Train for this many optimizer steps (total, when resuming).", resume=True)
    val_fraction: float = option(0.1, "Share of the corpus held out for validation.")
    split: str = option("auto", f"{_(SPLITS)}: what is held out. tail = the end of the token stream; documents = "
                                "whole documents (files, tunes, pieces) drawn with a fixed seed from across the "
                                "corpus; auto = documents for a corpus made of them, tail for one text file.")
    patience: int | None = option(None, "Stop early after this many evaluations without a better validation loss "
                                        "(default for a timed run: as many as make a tenth of the budget).",
                                  resume=True)
    stop_below: float | None = option(None, "Stop early (after --patience evaluations without a better validation "
                                            "loss) only while the training loss is under this share of the best "
                                            "validation loss (default: chosen with the patience; none when "
                                            "--patience is given).", resume=True)
    stop_rise: float | None = option(None, "Stop early (after --patience evaluations without a better validation "
                                           "loss) also once the last validation loss is this share above the best (and "
                                           "the training loss under it), "
                                           "e.g. 0.03 (default: chosen with the patience; none when --patience "
                                           "is given).", resume=True)
    eval_every: float = option(0.1, "Share of the budget between evaluations (a timed run whose early stop is left "
                                     "to seqgen: 5%, or 2% past 96 passes over the corpus).")
    eval_tokens: int = option(16384, "Validation tokens read per evaluation during training.")
    seed: int = option(0, "Random seed (repeatable on the same machine).")
    device: str = option("auto", "auto (CUDA when present), cpu, cuda, cuda:N.", resume=True)
    devices: int = option(1, "Processes to train in (torchrun + DDP): N GPUs with NCCL when CUDA is there, N CPU "
                             "processes with gloo otherwise. --batch stays the global batch.", resume=True)
    precision: str = option("auto", f"{_(PRECISIONS)}: auto = bf16 autocast on GPUs that support it, fp32 on "
                                    "the CPU; fp16 uses a gradient scaler; weights stay fp32.", resume=True)
    compile: bool = option(False, "Compile the model with torch.compile.", resume=True)
    threads: int | None = option(None, "CPU threads for torch (default: torch's choice).", resume=True)
    log: str | None = option(None, "Also log to: tensorboard (scalars in RUN/tensorboard/, through tensorboardX: "
                                   "the seqgen[tensorboard] extra). metrics.jsonl is always written.", resume=True)
    transpose: tuple[int, int] | None = option(None, "Music: transposition augmentation range in semitones, "
                                                     "e.g. -5..6 (default for music: -5..6 within the pitch range "
                                                     "the corpus uses; 0..0 turns it off).",
                                               parse=lambda text: parse_range(text))

    def __post_init__(self) -> None:
        if isinstance(self.transpose, list):
            self.transpose = tuple(self.transpose)
        t = self.transpose
        checks = [
            (self.attn_score in ATTN_SCORES, f"attn-score must be one of {_(ATTN_SCORES)}, got {self.attn_score!r}"),
            (self.model in MODEL_TYPES, f"model must be one of {', '.join(MODEL_TYPES)}, got {self.model!r}"),
            (self.size is None or self.size in SIZES, f"size must be one of {', '.join(SIZES)}, got {self.size!r}"),
            (self.objective in OBJECTIVES, f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}"),
            (self.batching in BATCHING, f"batching must be one of {', '.join(BATCHING)}, got {self.batching!r}"),
            (0.0 <= self.fim_rate <= 1.0, f"fim-rate must be in [0, 1], got {self.fim_rate}"),
            (self.batch is None or self.batch >= 1, f"batch must be at least 1, got {self.batch}"),
            (self.window >= 8, f"window must be at least 8 tokens, got {self.window}"),
            (self.lr is None or self.lr > 0, f"lr must be positive, got {self.lr}"),
            (0.0 <= self.min_lr_ratio <= 1.0, f"min-lr-ratio must be in [0, 1], got {self.min_lr_ratio}"),
            (self.warmup >= 0, f"warmup must be >= 0, got {self.warmup}"),
            (self.grad_clip > 0, f"grad-clip must be positive, got {self.grad_clip}"),
            (self.dropout is None or 0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}"),
            (
                self.weight_decay is None or self.weight_decay >= 0,
                f"weight-decay must be >= 0, got {self.weight_decay}",
            ),
            (self.split in SPLITS, f"split must be one of {_(SPLITS)}, got {self.split!r}"),
            (self.patience is None or self.patience >= 1, f"patience must be at least 1, got {self.patience}"),
            (self.stop_below is None or self.stop_below > 0, f"stop-below must be positive, got {self.stop_below}"),
            (self.stop_rise is None or self.stop_rise > 0, f"stop-rise must be positive, got {self.stop_rise}"),
            (self.time is None or self.time > 0, f"time must be positive, got {self.time}"),
            (self.steps is None or self.steps >= 1, f"steps must be at least 1, got {self.steps}"),
            (0.0 < self.val_fraction < 0.5, f"val-fraction must be in (0, 0.5), got {self.val_fraction}"),
            (0.0 < self.eval_every <= 1.0, f"eval-every must be in (0, 1], got {self.eval_every}"),
            (self.eval_tokens >= 1, f"eval-tokens must be at least 1, got {self.eval_tokens}"),
            (self.threads is None or self.threads >= 1, f"threads must be at least 1, got {self.threads}"),
            (self.devices >= 1, f"devices must be at least 1, got {self.devices}"),
            (self.precision in PRECISIONS, f"precision must be one of {_(PRECISIONS)}, got {self.precision!r}"),
            (t is None or t[0] <= 0 <= t[1], f"transpose range must include 0, got {t}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        if self.model == "transformer" and self.batching == "stream":
            raise ConfigError("stream batching (truncated BPTT) needs a recurrent model, not the transformer")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["transpose"] = list(self.transpose) if self.transpose is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in d.items() if k in names}
        values.setdefault("split", "tail")  # runs from before the split option held out the tail
        return cls(**values)

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def resolved(self) -> "TrainConfig":
        """The model's own choices filled in (size, batch, learning rate), without the corpus:
        what ``choose_settings`` starts from."""
        spec = MODELS[self.model]
        return self.replace(size=self.size or spec.auto_size, batch=self.batch or spec.auto_batch,
                            lr=self.lr or spec.auto_lr)


# ---- settings chosen from the corpus and the budget (the measurements behind them: docs/defaults.md) ----
# Training tokens/s per model type on two CPU cores, used only where the speed was not measured.
NOMINAL_TOKENS_PER_S = {"rnn": 40_000, "gru": 15_000, "lstm": 25_000, "lstm-attn": 7_000, "transformer": 5_000}
GPU_FACTOR = 20
# (epochs up to, dropout, weight decay, the band in words): more passes over the same text need more regularization.
REGULARIZATION = [
    (8.0, 0.0, 0.01, "the budget reads the corpus at most about 8 times"),
    (24.0, 0.1, 0.05, "the budget reads the corpus 8-24 times"),
    (96.0, 0.25, 0.1, "the budget reads the corpus 24-96 times"),
    (float("inf"), 0.4, 0.1, "the budget reads the corpus more than 96 times"),
]
SMALL_CORPUS_TOKENS = 100_000  # below this, read more than 96 times, recurrent models narrow to 128 units
# Every timed run left to seqgen evaluates every EVAL_EVERY of the budget and stops once validation has
# not improved for STOP_AFTER of it while either the training loss is under MEMORIZED of the best
# validation loss (the model memorizes its training text) or the last validation loss is RISEN over the
# best with the training loss under the best (validation itself has turned: multitrack corpora of a few
# pieces level off with the training loss at 70-75% of validation; where validation sits under the
# training loss, a rise is noise). A small rise of validation does not stop it; nor does a training loss under
# validation's that only says the held-out pieces differ (measured: docs/defaults.md). Past 96 epochs
# validation swings further and comes back, so there only the first guard stops.
EVAL_EVERY = 0.05
STOP_AFTER = 0.1
MEMORIZED = 0.7
RISEN = 0.03
# Beyond the last band, evaluations come more often (a page read hundreds of times is best within seconds).
EARLY_EVAL_EVERY = 0.02
MUSIC_TRANSPOSE = (-5, 6)  # every key once, within the pitch range the corpus uses
AUGMENTED = 2.0  # transposition counts as this many times the data when counting epochs (measured:
# bach-chorales overfit from about 9 raw epochs on without it)


def choose_settings(cfg: "TrainConfig", train_tokens: int, kind: str, tokens_per_s: float | None = None,
                    device_type: str = "cpu", processes: int = 1) -> tuple["TrainConfig", dict[str, str]]:
    """Fill in what the user left to seqgen from the corpus and the budget; return the resolved
    config and, per setting chosen, why. Rules depend on what the corpus is (its size in tokens,
    text or music) and on the budget (``tokens_per_s``: the measured training speed, else an
    estimate), never on its name."""
    cfg = cfg.resolved()
    why: dict[str, str] = {}
    transpose = cfg.transpose
    if transpose is None:
        transpose = MUSIC_TRANSPOSE if kind == "music" else (0, 0)
        if kind == "music":
            why["transpose"] = (f"music: transposition by {transpose[0]}..{transpose[1]} semitones within the "
                                "corpus's pitch range")
    per_s = tokens_per_s or NOMINAL_TOKENS_PER_S[cfg.model] * (GPU_FACTOR * processes if device_type == "cuda" else 1)
    if cfg.steps is not None:
        budget = cfg.steps * cfg.batch * cfg.window
    else:
        budget = (cfg.time or 0) * per_s
    effective = train_tokens * (AUGMENTED if transpose != (0, 0) else 1.0)
    epochs = budget / max(1, effective)
    dropout, decay, band = next((d, w, b) for limit, d, w, b in REGULARIZATION if epochs <= limit)
    changes: dict = {"transpose": transpose}
    if cfg.dropout is None:
        changes["dropout"] = dropout
        speed = "" if cfg.steps is not None else f" at {per_s:,.0f} tokens/s{'' if tokens_per_s else ' (estimated)'}"
        how = "no dropout" if dropout == 0 else "dropout against overfitting"
        why["dropout"] = f"{dropout}: {band}, {how} ({epochs:.1f} epochs of {train_tokens:,} training tokens{speed})"
    if cfg.weight_decay is None:
        changes["weight_decay"] = decay
        why["weight_decay"] = f"{decay} on the weight matrices: {band}"
    narrow = (
        epochs > REGULARIZATION[-2][0]
        and train_tokens < SMALL_CORPUS_TOKENS
        and cfg.model in ("rnn", "gru", "lstm")
        and cfg.dim is None
        and cfg.size == MODELS[cfg.model].auto_size
    )
    if narrow:
        changes["dim"] = 128
        why["dim"] = (f"128: a small corpus ({train_tokens:,} tokens) read {epochs:.0f} times overfits the "
                      f"{MODELS[cfg.model].presets[cfg.size]['dim']}-unit default")
    if cfg.patience is None and cfg.steps is None:
        changes.update(_validation_stop(cfg, epochs, why))
    return cfg.replace(**changes), why


def _validation_stop(cfg: "TrainConfig", epochs: float, why: dict[str, str]) -> dict:
    """The early stop of a timed run left to seqgen: its patience, evaluation cadence and the
    guards under which it may stop (``Fit.patience_out``), with the reasons."""
    memorizing = epochs > REGULARIZATION[-2][0]
    every = EARLY_EVAL_EVERY if memorizing else EVAL_EVERY
    every = every if cfg.eval_every == TrainConfig.eval_every else cfg.eval_every
    patience = max(1, round(STOP_AFTER / every))
    below = cfg.stop_below if cfg.stop_below is not None else MEMORIZED
    rise = cfg.stop_rise if cfg.stop_rise is not None else (None if memorizing else RISEN)
    when = (f"{epochs:.0f} epochs are more than a corpus this size can use, so training stops once" if memorizing
            else "a timed run stops once")
    turned = (f" or the last validation loss is {rise:.0%} over the best with the training loss under it"
              if rise is not None else "")
    either = "either " if turned else ""
    why["patience"] = (f"{patience} evaluations, one every {every:.0%} of the budget: {when} validation has not "
                       f"improved for {patience * every:.0%} of the budget and {either}the training loss is under "
                       f"{below:.0%} of the best validation loss{turned} (--patience N stops on validation alone)")
    if cfg.stop_below is None:
        why["stop_below"] = (f"{below}: a training loss this far under the best validation loss says the model "
                             "memorizes; noise in validation alone does not stop the run")
    if cfg.stop_rise is None and rise is not None:
        why["stop_rise"] = (f"{rise}: validation this far over its best a tenth of the budget later has turned; "
                            "on its way down it rose less than that between two bests")
    return {"patience": patience, "eval_every": every, "stop_below": below, "stop_rise": rise}

"""The training loop. It knows nothing about the terminal: progress goes to callbacks.

AdamW, linear warmup then cosine decay to ``min_lr_ratio`` of the peak, gradient clipping.
With a time budget the schedule runs on elapsed time, so the learning rate reaches its floor
as the budget runs out. Batches are random windows, or (recurrent models) consecutive
windows per row with the state carried and detached: truncated BPTT.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from seqgen import checkpoint as ckpt_io
from seqgen.config import MEMORIZED, TrainConfig, choose_settings
from seqgen.data.batches import StreamBatcher, random_windows
from seqgen.data.cache import TokenData
from seqgen.data.split import split
from seqgen.device import resolve_device, set_threads
from seqgen.distributed import Group, peers_gone, rows_of
from seqgen.errors import ConfigError, CorpusError, DistributedError, FileWriteError
from seqgen.fileio import write_json
from seqgen.losses import stream_loss
from seqgen.models import SeqModel, build_model, make_config
from seqgen.objectives import FimIds, apply_objective, fim_rows
from seqgen.runs import BEST, CONFIG, LAST, METRICS
from seqgen.tokenizers import Tokenizer

TRAIN_POINTS = 100  # training-loss records per run in metrics.jsonl (besides the evaluations), for the curves


class Callback(Protocol):
    def on_start(self, info: dict) -> None: ...
    def on_step(self, info: dict) -> None: ...
    def on_eval(self, info: dict) -> None: ...


class _Silent:
    def on_start(self, info): pass
    def on_step(self, info): pass
    def on_eval(self, info): pass


@dataclass
class TrainResult:
    step: int
    elapsed: float
    train_loss: float
    val_loss: float | None
    best_val_loss: float | None
    tokens_per_s: float
    interrupted: bool
    out: Path
    history: list[dict] = field(default_factory=list)
    signal: int | None = None  # the signal that stopped the run (SIGTERM, SIGHUP), if one did
    best_step: int | None = None  # the step of the best validation loss
    early_stopped: bool = False  # --patience ran out
    choices: dict = field(default_factory=dict)  # what seqgen chose for the settings left to it, and why

    @property
    def overfitting(self) -> bool:
        """Validation got worse after its best, which came before the last third of the run."""
        last = self.history[-1]["val_loss"] if self.history else None
        return (self.best_step is not None and last is not None and self.best_val_loss is not None
                and self.best_step < self.step * 2 / 3 and last > self.best_val_loss + 0.01)


def new_model(cfg: TrainConfig, tokenizer: Tokenizer) -> SeqModel:
    extra: dict[str, Any] = dict(layers=cfg.layers, dim=cfg.dim, emb_dim=cfg.emb_dim, dropout=cfg.dropout,
                                 mid_id=tokenizer.mid_id)
    if cfg.model == "transformer":
        extra.update(heads=cfg.heads, window=cfg.window)
    if cfg.model == "lstm-attn":
        extra.update(score=cfg.attn_score, encoder=cfg.objective != "causal", memory=max(cfg.window, 64))
    return build_model(make_config(cfg.model, tokenizer.vocab_size, cfg.size, **extra))


def lr_at(cfg: TrainConfig, step: int, progress: float) -> float:
    peak = cfg.lr
    warm = min(1.0, (step + 1) / cfg.warmup) if cfg.warmup else 1.0
    floor = cfg.min_lr_ratio
    cos = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return peak * warm * (floor + (1 - floor) * cos)


class Trainer:
    def __init__(self, cfg: TrainConfig, data: TokenData, out: Path, resume: ckpt_io.Checkpoint | None = None,
                 callback: Callback | None = None, group: Group | None = None):
        if cfg.time is None and cfg.steps is None:
            raise ConfigError("give a time budget or a number of steps")
        self.data, self.out = data, Path(out)
        self.group = group
        self.main = group is None or group.is_main
        self.cb = (callback or _Silent()) if self.main else _Silent()
        self.device = group.device if group is not None else resolve_device(cfg.device)
        parts = split(data, cfg.val_fraction, cfg.split)
        self.train_tokens, self.val_tokens = parts.train, parts.val
        need = cfg.window + 2
        if len(self.train_tokens) < need or len(self.val_tokens) < 2:
            raise CorpusError(
                f"corpus is too short: {len(data)} tokens, and training needs at least {need} in the "
                f"training split plus a validation split; use a smaller --window or a longer corpus"
            )
        set_threads(cfg.threads)
        # what is left to seqgen is chosen from the corpus and the budget (a resumed run keeps its choices)
        world, asked = (group.world if group is not None else 1), cfg
        cfg, self.choices = choose_settings(asked, len(self.train_tokens), data.tokenizer.kind, None,
                                            self.device.type, world)
        if self.choices and asked.time is not None and asked.steps is None:
            speed = self._measure_speed(cfg, world)  # the budget in tokens, from this machine's speed
            if group is not None:
                speed = group.decide(speed)[0]  # rank 0's measurement, so every rank chooses alike
            cfg, self.choices = choose_settings(asked, len(self.train_tokens), data.tokenizer.kind, speed)
        self.choices["split"] = (f"{parts.mode}: " + (f"{len(parts.held_out)} whole documents held out, drawn "
                                 "from across the corpus" if parts.mode == "documents" else "the end of the stream"))
        cfg = cfg.replace(split=parts.mode)
        if group is not None:
            group.rows(cfg.batch)  # a batch that does not divide among the processes is refused here
            cfg = cfg.replace(devices=group.world)
        self.cfg = cfg
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        self.rng = np.random.default_rng(cfg.seed + (resume.step if resume else 0))
        self.pitch_range = self._pitch_range() if cfg.transpose != (0, 0) and data.tokenizer.kind == "music" else None
        if resume is not None:
            self.model = resume.model.to(self.device)
            self.step, self.elapsed0, self.best = resume.step, resume.elapsed, resume.best_val_loss
            if self.progress(self.elapsed0) >= 1.0:
                raise ConfigError(f"the run already reached its budget (step {self.step}); "
                                  "give --steps or --time to train further")
        else:
            self.model = new_model(cfg, data.tokenizer).to(self.device)
            self.step, self.elapsed0, self.best = 0, 0.0, None
        torch.manual_seed(cfg.seed + (group.rank if group is not None else 0))  # dropout differs per rank
        self.net = self.model  # what the step runs: the model, wrapped in DDP and compiled when asked
        if group is not None:
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(self.model, device_ids=[self.device] if self.device.type == "cuda" else None)
        if cfg.compile:
            self.net = torch.compile(self.net)
        self.amp_dtype, self.scaler = self._precision(cfg.precision)
        self.saved_step: int | None = resume.step if resume is not None else None  # the last good checkpoint
        self.best_step: int | None = None
        self.since_best = 0  # evaluations since the best one (for --patience)
        self.stop_signal: int | None = None
        decay = [p for n, p in self.model.named_parameters() if p.dim() >= 2 and "embed" not in n]
        other = [p for n, p in self.model.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
        self.opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0.0}],
            lr=lr_at(cfg, 0, 0.0), betas=(0.9, 0.99), fused=True,  # fused: 25% faster steps on CPU than foreach
        )
        if resume is not None and resume.optimizer:
            self.opt.load_state_dict(resume.optimizer)
        self.fim = FimIds.of(data.tokenizer)
        self.n_fim = fim_rows(cfg.objective, cfg.fim_rate, cfg.batch)
        stream = cfg.batching == "stream" or (cfg.batching == "auto" and self.model.stateful_training)
        self.stream = stream and self.model.stateful_training and self.n_fim < cfg.batch
        if cfg.batching == "stream" and not self.model.stateful_training:
            raise ConfigError(f"stream batching (truncated BPTT) is not available for {cfg.model}")
        n_causal = cfg.batch - self.n_fim
        self.batcher = StreamBatcher(self.train_tokens, n_causal, cfg.window, self.rng) if self.stream else None
        self.state = None

    # ---- pieces --------------------------------------------------------------------------
    def _precision(self, name: str) -> tuple[torch.dtype | None, torch.amp.GradScaler | None]:
        """(autocast dtype or None for fp32, gradient scaler for fp16)."""
        if name == "auto":
            cuda = self.device.type == "cuda"
            name = "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
        if name == "fp32":
            return None, None
        if name == "bf16":
            return torch.bfloat16, None
        if self.device.type != "cuda":
            raise ConfigError("--precision fp16 needs a GPU (the CPU's kernels have no fp16 LSTM); "
                              "on the CPU use bf16 or fp32")
        return torch.float16, torch.amp.GradScaler(self.device.type)

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def progress(self, elapsed: float) -> float:
        parts = []
        if self.cfg.steps:
            parts.append(self.step / self.cfg.steps)
        if self.cfg.time:
            parts.append(elapsed / self.cfg.time)
        return max(parts)

    def batch(self) -> tuple[np.ndarray, torch.Tensor | None]:
        cfg = self.cfg
        reset = None
        if self.batcher is not None:
            x_causal, reset_causal = self.batcher.next()
            x_fim = random_windows(self.train_tokens, self.n_fim, cfg.window, self.rng)
            x = np.concatenate((x_causal, x_fim))
            reset = np.concatenate((reset_causal, np.ones(self.n_fim, dtype=bool)))
        else:
            x = random_windows(self.train_tokens, cfg.batch, cfg.window, self.rng)
        if self.pitch_range is not None:
            x = self.data.tokenizer.transpose_batch(x, self.rng, *cfg.transpose, *self.pitch_range)
        x = apply_objective(x, self.n_fim, self.fim, self.rng)
        # every rank draws the global batch from the shared seed and trains on its own rows
        x = rows_of(x, self.group)
        reset = rows_of(reset, self.group) if reset is not None else None
        return x, (torch.as_tensor(reset, device=self.device) if reset is not None else None)

    def evaluate(self) -> float:
        # Eight streams read side by side: a quick estimate (the whole split is `seqgen eval`'s).
        return stream_loss(self.model, self.val_tokens, chunk=self.cfg.window, device=self.device,
                           max_tokens=self.cfg.eval_tokens, streams=8)

    def _measure_speed(self, cfg: TrainConfig, world: int) -> float:
        """Training tokens per second of the model ``cfg`` describes, timed over a few steps of a
        throwaway copy (its own random numbers: the run's weights and batches are unaffected)."""
        model = new_model(cfg, self.data.tokenizer).to(self.device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        rows = max(1, cfg.batch // world)
        rng = np.random.default_rng(0)
        took = 0.0
        for i in range(5):
            x = torch.as_tensor(random_windows(self.train_tokens, rows, cfg.window, rng), device=self.device)
            start = time.perf_counter()
            logits, _ = model(x[:, :-1])
            F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1)).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            if i >= 2:  # the first steps build kernels and caches
                took += time.perf_counter() - start
        return 3 * rows * world * cfg.window / max(took, 1e-9)

    def _pitch_range(self) -> tuple[int, int]:
        """The lowest and highest pitch the training corpus uses (transposition stays inside it)."""
        tok = self.data.tokenizer
        p0 = tok.offset["Pitch"]
        ids = np.asarray(self.train_tokens)
        pitches = ids[(ids >= p0) & (ids < p0 + 128)].astype(np.int64) - p0
        return (int(pitches.min()), int(pitches.max())) if len(pitches) else (0, 127)

    def patience_out(self, train_loss: float | None) -> bool:
        """--patience evaluations without a better validation loss; when seqgen chose the patience
        (a budget far larger than the corpus), also a training loss that shows memorizing."""
        if self.cfg.patience is None or self.since_best < self.cfg.patience:
            return False
        if "patience" not in self.choices:
            return True
        return train_loss is not None and self.best is not None and train_loss < MEMORIZED * self.best

    def request_stop(self, signum: int) -> None:
        """Stop after the current step and save a checkpoint (what SIGTERM and SIGHUP ask)."""
        self.stop_signal = signum

    def checkpoint(self, elapsed: float, name: str) -> Path:
        path = self.out / name
        try:
            self._save(elapsed, path)
        except FileWriteError as e:
            last = (f"the last good checkpoint is {self.out / LAST} at step {self.saved_step}"
                    if self.saved_step is not None else "no checkpoint of this run was saved")
            raise FileWriteError(f"{e}; training stopped at step {self.step}, {last}") from None
        if name == LAST:
            self.saved_step = self.step
        return path

    def _save(self, elapsed: float, path: Path) -> None:
        ckpt_io.save(
            ckpt_io.Checkpoint(self.model, self.data.tokenizer, self.cfg, self.step, elapsed, self.best,
                               self.opt.state_dict(), {"corpus": self.data.meta.get("spec", self.data.source),
                                "encoding": self.data.meta.get("encoding", "utf-8")}),
            path,
        )

    def log(self, record: dict) -> None:
        """Append one line to metrics.jsonl (an append-only log: a torn last line is skipped by readers)."""
        try:
            with open(self.out / METRICS, "a") as fh:
                fh.write(json.dumps(record) + "\n")
        except OSError as e:
            raise FileWriteError(f"cannot write {self.out / METRICS}: {e.strerror or e}") from None

    # ---- the loop ------------------------------------------------------------------------
    def run(self) -> TrainResult:
        cfg, model = self.cfg, self.model
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_json(self.out / CONFIG, {
                "train": cfg.to_dict(), "choices": self.choices, "model": model.config.to_dict(),
                "tokenizer": self.data.tokenizer.to_dict(), "corpus": self.data.source, "params": model.num_params(),
                "tokens": {"train": len(self.train_tokens), "val": len(self.val_tokens)},
            })
        self.cb.on_start({"params": model.num_params(), "device": str(self.device), "step": self.step,
                          "train_tokens": len(self.train_tokens), "val_tokens": len(self.val_tokens),
                          "stream": self.stream, "config": cfg, "choices": self.choices})
        model.train()
        t0 = time.perf_counter()
        elapsed = self.elapsed0
        next_eval = (math.floor(self.progress(elapsed) / cfg.eval_every) + 1) * cfg.eval_every
        next_point = math.floor(self.progress(elapsed) * TRAIN_POINTS + 1) / TRAIN_POINTS
        tokens_seen, loss_ema, val = 0, None, None
        history: list[dict] = []
        interrupted = False
        try:
            while True:
                progress, stop = self.progress(elapsed), self.stop_signal or 0
                patience_out = float(self.patience_out(loss_ema))
                if self.group is not None:  # rank 0 decides; every rank stops at the same step
                    progress, stop, patience_out = self.group.decide(progress, stop, patience_out)
                    if stop:  # a signal that reached rank 0 during the broadcast stays for the next step
                        self.stop_signal = int(stop)
                if progress >= 1.0 or stop or patience_out:
                    break
                lv = self._step(lr_at(cfg, self.step, progress))
                self.step += 1
                tokens_seen += cfg.batch * cfg.window
                loss_ema = lv if loss_ema is None else 0.95 * loss_ema + 0.05 * lv
                elapsed = self.elapsed0 + time.perf_counter() - t0
                if not math.isfinite(lv):
                    raise ConfigError(f"training diverged at step {self.step} (loss {lv}); try a lower --lr")
                wall = time.perf_counter() - t0
                done = min(1.0, self.progress(elapsed))
                info = {"step": self.step, "loss": loss_ema, "lr": self.opt.param_groups[0]["lr"], "elapsed": elapsed,
                        "progress": done, "tokens_per_s": tokens_seen / max(wall, 1e-9), "val_loss": val}
                self.cb.on_step(info)
                if self.main and (done >= next_eval or done >= 1.0):
                    next_eval += cfg.eval_every
                    val = self._eval_and_save(info, elapsed, history)
                elif self.main and done >= next_point:  # the training curve between evaluations
                    self.log({k: v for k, v in info.items() if k != "val_loss"} | {"event": "train", "time": time.time()})
                if done >= next_point:
                    next_point = math.floor(done * TRAIN_POINTS + 1) / TRAIN_POINTS
        except KeyboardInterrupt:
            interrupted = True
        except RuntimeError as e:
            if self.group is None or not peers_gone(e):
                raise
            if self.stop_signal is None:  # a peer died: save what the last complete step holds, then say so
                if self.main:
                    self.checkpoint(elapsed, LAST)
                raise DistributedError(f"another process of this training ended at step {self.step + 1} "
                                       f"({str(e).strip().splitlines()[0][:120]}); "
                                       f"{'the checkpoint at step ' + str(self.step) + ' is saved' if self.main else ''}"
                                       ) from None
        if self.stop_signal is not None:
            interrupted = True
        if interrupted and self.main:
            self.checkpoint(elapsed, LAST)
        wall = time.perf_counter() - t0
        early = self.patience_out(loss_ema) and not interrupted
        return TrainResult(self.step, elapsed, loss_ema or float("nan"), val, self.best,
                           tokens_seen / max(wall, 1e-9), interrupted, self.out, history, self.stop_signal,
                           self.best_step, early, self.choices)

    def _step(self, lr: float) -> float:
        """One optimizer step on this rank's rows of the global batch; returns its loss."""
        for g in self.opt.param_groups:
            g["lr"] = lr
        x, reset = self.batch()
        xt = torch.as_tensor(x, device=self.device)
        state = self.state
        if state is not None and reset is not None:
            state = self.model.reset_rows(state, reset)
        with self._autocast():
            logits, new_state = self.net(xt[:, :-1], state)  # (B, T, V)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), xt[:, 1:].reshape(-1))
        self.opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.opt)
        else:
            loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        self.state = self.model.detach_state(new_state) if self.stream else None
        return loss.item()

    def _eval_and_save(self, info: dict, elapsed: float, history: list) -> float:
        val = self.evaluate()
        improved = self.best is None or val < self.best
        if improved:
            self.best, self.best_step, self.since_best = val, self.step, 0
        else:
            self.since_best += 1
        record = {**info, "event": "eval", "val_loss": val, "val_bits": val / math.log(2),
                  "best": improved, "best_step": self.best_step, "best_val_loss": self.best, "time": time.time()}
        self.checkpoint(elapsed, LAST)
        if improved:
            self.checkpoint(elapsed, BEST)
        self.log(record)
        history.append(record)
        self.cb.on_eval(record)
        return val

"""The loop: ``Fit(...).run()`` trains until the budget is used, a stop is asked for or the
patience runs out, evaluating and saving as it goes. Everything it changes is in its
``TrainState``, which every checkpoint saves whole. Rank 0 decides and shares each decision,
evaluates, saves and reports; the other ranks only step.

AdamW, linear warmup then cosine decay to ``min_lr_ratio`` of the peak, gradient clipping. With a
time budget the schedule runs on elapsed time, so the learning rate reaches its floor as the
budget runs out. Batches are random windows, or (recurrent models) consecutive windows per row
with the state carried and detached: truncated BPTT.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from seqgen import checkpoint as ckpt_io
from seqgen.config import TrainConfig
from seqgen.data.cache import TokenData
from seqgen.distributed import Group, peers_gone
from seqgen.errors import ConfigError, DistributedError, FileWriteError
from seqgen.losses import stream_loss
from seqgen.records import EvalRecord, StartInfo, StepRecord
from seqgen.runs import BEST, LAST
from seqgen.train.build import Built, carried_state, snapshot
from seqgen.train.loggers import Callbacks
from seqgen.train.plan import Plan
from seqgen.train_state import TrainState

TRAIN_POINTS = 100  # training-loss points per run in metrics.jsonl (besides the evaluations), for the curves
EMA = 0.95  # the training loss shown and logged is this moving average over steps


def lr_at(cfg: TrainConfig, step: int, progress: float) -> float:
    warm = min(1.0, (step + 1) / cfg.warmup) if cfg.warmup else 1.0
    floor = cfg.min_lr_ratio
    cos = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr * warm * (floor + (1 - floor) * cos)


def progress_of(cfg: TrainConfig, step: int, elapsed: float) -> float:
    """The share of the budget used: of the steps or of the time, whichever is further."""
    return max(([step / cfg.steps] if cfg.steps else []) + ([elapsed / cfg.time] if cfg.time else []))


@dataclass
class TrainResult:
    step: int
    elapsed: float
    train_loss: float
    val_loss: float | None  # the last evaluation's
    best_val_loss: float | None
    best_step: int | None
    tokens_per_s: float
    out: Path
    interrupted: bool = False
    signal: int | None = None  # the signal that stopped the run (SIGTERM, SIGHUP), if one did
    early_stopped: bool = False  # the patience ran out
    history: list[EvalRecord] = field(default_factory=list)  # this session's evaluations
    choices: dict = field(default_factory=dict)  # what seqgen chose for the settings left to it, and why

    @property
    def overfitting(self) -> bool:
        """Validation got worse after its best, which came before the last third of the run."""
        last = self.history[-1].val_loss if self.history else None
        return (self.best_step is not None and last is not None and self.best_val_loss is not None
                and self.best_step < self.step * 2 / 3 and last > self.best_val_loss + 0.01)


class Fit:
    def __init__(self, plan: Plan, built: Built, data: TokenData, out: Path, state: TrainState,
                 callbacks: Callbacks, group: Group | None = None, notes: list[str] | None = None):
        self.plan, self.cfg, self.built, self.data, self.out = plan, plan.cfg, built, data, Path(out)
        self.state, self.cb, self.group = state, callbacks, group
        self.main = group is None or group.is_main
        rows = self.cfg.batch // (group.world if group is not None else 1)
        self.carried = carried_state(state, built.model, built.device, rows) if plan.stream else None
        self.stop_signal: int | None = None
        self.saved_step: int | None = state.step if state.step else None  # the last good checkpoint
        p = self.progress()
        if state.next_eval is None:
            state.next_eval = (math.floor(p / self.cfg.eval_every) + 1) * self.cfg.eval_every
        if state.next_point is None:
            state.next_point = math.floor(p * TRAIN_POINTS + 1) / TRAIN_POINTS
        self.notes = notes or []
        self.history: list[EvalRecord] = []
        self.tokens_seen, self.t0 = 0, time.perf_counter()

    def progress(self) -> float:
        return progress_of(self.cfg, self.state.step, self.state.elapsed)

    def request_stop(self, signum: int) -> None:
        """Stop after the current step and save a checkpoint (what SIGINT, SIGTERM and SIGHUP ask)."""
        self.stop_signal = signum

    def patience_out(self) -> bool:
        """--patience evaluations without a better validation loss and, where a guard is set
        (seqgen sets both with the patience of a timed run), one of them holds: the training loss
        under ``stop_below`` of the best validation loss (the model fits its training text better
        than new text) or the last validation loss over the best by ``stop_rise`` of it while the
        training loss is under the best (validation itself has turned)."""
        s, cfg = self.state, self.cfg
        if cfg.patience is None or s.since_best < cfg.patience:
            return False
        if cfg.stop_below is None and cfg.stop_rise is None:
            return True
        if s.best is None:
            return False
        memorized = cfg.stop_below is not None and s.loss_ema is not None and s.loss_ema < cfg.stop_below * s.best
        fits_training = s.loss_ema is not None and s.loss_ema < s.best  # else a rise is noise, not overfitting
        risen = (cfg.stop_rise is not None and s.val is not None and s.val > (1 + cfg.stop_rise) * s.best
                 and fits_training)
        return memorized or risen

    # ---- the loop ------------------------------------------------------------------------
    def run(self) -> TrainResult:
        self.cb.on_start(self._start_info())
        self.built.model.train()
        self.elapsed0, self.t0 = self.state.elapsed, time.perf_counter()
        interrupted = False
        try:
            while True:
                progress, stop = self._decide()
                if stop:
                    break
                self._train_step(progress)
        except KeyboardInterrupt:
            interrupted = True
        except RuntimeError as e:
            self._peer_failure(e)
        interrupted = interrupted or self.stop_signal is not None
        if interrupted and self.main:
            self.checkpoint(LAST)
        self.cb.on_end()
        return self._result(interrupted)

    def _decide(self) -> tuple[float, bool]:
        """(progress, whether to stop): rank 0's, shared so that every rank stops at the same step."""
        progress, stop, out = self.progress(), self.stop_signal or 0, float(self.patience_out())
        if self.group is not None:
            progress, stop, out = self.group.decide(progress, stop, out)
            if stop:  # a signal that reached rank 0 during the broadcast stays for the next step
                self.stop_signal = int(stop)
        return progress, bool(progress >= 1.0 or stop or out)

    def _train_step(self, progress: float) -> None:
        s, cfg = self.state, self.cfg
        loss = self._optimizer_step(lr_at(cfg, s.step, progress))
        s.step += 1
        self.tokens_seen += cfg.batch * cfg.window
        s.loss_ema = loss if s.loss_ema is None else EMA * s.loss_ema + (1 - EMA) * loss
        s.elapsed = self.elapsed0 + time.perf_counter() - self.t0
        if not math.isfinite(loss):
            raise ConfigError(f"training diverged at step {s.step} (loss {loss}); try a lower --lr")
        record = self._record(StepRecord)
        self.cb.on_step(record)
        done = record.progress
        if self.main and (done >= s.next_eval or done >= 1.0):
            s.next_eval += cfg.eval_every
            self._evaluate_and_save()
        elif self.main and done >= s.next_point:
            self.cb.on_log(record)  # the training curve between evaluations
        if done >= s.next_point:
            s.next_point = math.floor(done * TRAIN_POINTS + 1) / TRAIN_POINTS

    def _optimizer_step(self, lr: float) -> float:
        """One optimizer step on this rank's rows of the global batch; returns its loss."""
        b = self.built
        for g in b.opt.param_groups:
            g["lr"] = lr
        x, reset = b.batches.next()
        xt = torch.as_tensor(x, device=b.device)
        state = self.carried
        if state is not None and reset is not None:
            state = b.model.reset_rows(state, reset)
        with b.autocast():
            loss, new_state = b.net(xt[:, :-1], state, targets=xt[:, 1:])  # the mean loss of the next tokens
        b.opt.zero_grad(set_to_none=True)
        (b.scaler.scale(loss) if b.scaler is not None else loss).backward()
        if b.scaler is not None:
            b.scaler.unscale_(b.opt)
        torch.nn.utils.clip_grad_norm_(b.model.parameters(), self.cfg.grad_clip)
        if b.scaler is not None:
            b.scaler.step(b.opt)
            b.scaler.update()
        else:
            b.opt.step()
        self.carried = b.model.detach_state(new_state) if self.plan.stream else None
        return loss.item()

    def evaluate(self) -> float:
        # Eight streams read side by side: a quick estimate (the whole split is `seqgen eval`'s).
        cfg = self.cfg
        return stream_loss(self.built.model, self.plan.val_tokens, chunk=cfg.window, device=self.built.device,
                           max_tokens=cfg.eval_tokens, streams=8)

    def _evaluate_and_save(self) -> None:
        s = self.state
        val = self.evaluate()
        improved = s.best is None or val < s.best
        if improved:
            s.best, s.best_step, s.since_best = val, s.step, 0
        else:
            s.since_best += 1
        s.val = val
        record = self._record(EvalRecord, val_loss=val, best=improved, best_step=s.best_step, best_val_loss=s.best)
        self.checkpoint(LAST)
        if improved:
            self.checkpoint(BEST)
        self.history.append(record)
        self.cb.on_log(record)
        self.cb.on_eval(record)

    # ---- pieces --------------------------------------------------------------------------
    def _record(self, cls, **extra):
        s, wall = self.state, time.perf_counter() - self.t0
        return cls(step=s.step, loss=s.loss_ema, lr=self.built.opt.param_groups[0]["lr"], elapsed=s.elapsed,
                   progress=min(1.0, self.progress()), tokens_per_s=self.tokens_seen / max(wall, 1e-9),
                   time=time.time(), **extra)

    def _start_info(self) -> StartInfo:
        m, p = self.built.model, self.plan
        return StartInfo(params=m.num_params(), device=str(self.built.device), step=self.state.step,
                         train_tokens=len(p.train_tokens), val_tokens=len(p.val_tokens), stream=p.stream,
                         config=self.cfg, choices=p.choices, notes=self.notes)

    def checkpoint(self, name: str) -> Path:
        path = self.out / name
        try:
            ckpt_io.save(self._checkpoint(), path)
        except FileWriteError as e:
            last = (f"the last good checkpoint is {self.out / LAST} at step {self.saved_step}"
                    if self.saved_step is not None else "no checkpoint of this run was saved")
            raise FileWriteError(f"{e}; training stopped at step {self.state.step}, {last}") from None
        if name == LAST:
            self.saved_step = self.state.step
        return path

    def _checkpoint(self) -> ckpt_io.Checkpoint:
        state = snapshot(self.built, self.state, self.carried, one_process=self.group is None)
        return ckpt_io.Checkpoint(self.built.model, self.data.tokenizer, self.cfg, state=state,
                                  corpus=self.data.meta.get("spec", self.data.source),
                                  encoding=self.data.meta.get("encoding", "utf-8"), choices=self.plan.choices)

    def _peer_failure(self, e: RuntimeError) -> None:
        """A collective failed: another process ended. Save what the last complete step holds, then say so."""
        if self.group is None or not peers_gone(e):
            raise e
        if self.stop_signal is not None:
            return
        if self.main:
            self.checkpoint(LAST)
        saved = f"the checkpoint at step {self.state.step} is saved" if self.main else ""
        raise DistributedError(f"another process of this training ended at step {self.state.step + 1} "
                               f"({str(e).strip().splitlines()[0][:120]}); {saved}") from None

    def _result(self, interrupted: bool) -> TrainResult:
        s, wall = self.state, time.perf_counter() - self.t0
        return TrainResult(step=s.step, elapsed=s.elapsed, train_loss=s.loss_ema or math.nan, val_loss=s.val,
                           best_val_loss=s.best, best_step=s.best_step,
                           tokens_per_s=self.tokens_seen / max(wall, 1e-9), out=self.out, interrupted=interrupted,
                           signal=self.stop_signal, early_stopped=self.patience_out() and not interrupted,
                           history=self.history, choices=self.plan.choices)

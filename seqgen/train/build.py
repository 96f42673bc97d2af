"""Build what a plan trains: the model (new, or a checkpoint's), its DDP and compile wrappers,
the precision, the optimizer and the batch source, with the saved state put back on resume."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
import numpy as np
import torch

from seqgen.config import TrainConfig
from seqgen.data.batches import StreamBatcher, random_windows
from seqgen.device import cpu_bf16_supported
from seqgen.distributed import Group, rows_of
from seqgen.errors import ConfigError
from seqgen.models import SeqModel, model_for
from seqgen.objectives import FimIds, apply_objective
from seqgen.tokenizers import Tokenizer
from seqgen.train.plan import Plan
from seqgen.train_state import TrainState


def precision(name: str, device: torch.device) -> tuple[torch.dtype | None, torch.amp.GradScaler | None]:
    """(autocast dtype or None for fp32, gradient scaler for fp16); a precision this machine
    cannot run is refused in one line, from what the CPU or GPU reports."""
    cuda = device.type == "cuda"
    if name == "auto":
        name = "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
    if name == "fp32":
        return None, None
    if name == "bf16":
        if cuda and not torch.cuda.is_bf16_supported():
            raise ConfigError("--precision bf16: this GPU has no bf16 support; use --precision fp16 or fp32")
        if not cuda and not cpu_bf16_supported():
            raise ConfigError("--precision bf16: this CPU has no bf16 kernels (they need AVX-512 or AMX); "
                              "use --precision fp32 (the default on the CPU)")
        return torch.bfloat16, None
    if not cuda:
        raise ConfigError("--precision fp16 needs a GPU (the CPU's kernels have no fp16 LSTM); "
                          "on the CPU use bf16 or fp32")
    return torch.float16, torch.amp.GradScaler(device.type)


SPEED_WARMUP = 2  # steps that build kernels and caches, not timed
SPEED_STEPS = (3, 8)  # timed steps: at least, at most
SPEED_SECONDS = 1.5  # timed steps stop being added past this (a large model's step can take a second)


def new_model(cfg: TrainConfig, tokenizer: Tokenizer, train_tokens: np.ndarray) -> SeqModel:
    """A fresh model for ``cfg``, its output layer fitted to the ids ``train_tokens`` can hold."""
    return model_for(cfg, tokenizer.vocab_size, tokenizer.mid_id, tokenizer.output_ids(train_tokens, cfg.transpose))


def measure_speed(cfg: TrainConfig, tokens: np.ndarray, tokenizer: Tokenizer, device: torch.device,
                  world: int = 1) -> float:
    """Training tokens per second of the model ``cfg`` describes, timed over a few steps of a
    throwaway copy (its own random numbers: the run's weights and batches are unaffected): the
    median step, since a step the machine slowed says nothing of the run (measured on 2 cores:
    single steps of one model ranged 9,000-21,000 tokens/s, and the mean of three steps set
    one chorale run's estimate a third under what the run then reached)."""
    model = new_model(cfg, tokenizer, tokens).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    rows, rng = max(1, cfg.batch // world), np.random.default_rng(0)

    def step() -> float:
        x = torch.as_tensor(random_windows(tokens, rows, cfg.window, rng), device=device)
        start = time.perf_counter()
        loss, _ = model(x[:, :-1], targets=x[:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    return rows * world * cfg.window / median_step(step)


def median_step(step, warmup: int = SPEED_WARMUP, steps: tuple[int, int] = SPEED_STEPS,
                seconds: float = SPEED_SECONDS) -> float:
    """The median of ``step()``'s durations after ``warmup`` untimed calls: at least ``steps[0]``
    timed calls, then more while they took under ``seconds`` in all, up to ``steps[1]``."""
    for _ in range(warmup):
        step()
    took: list[float] = []
    while len(took) < steps[0] or (len(took) < steps[1] and sum(took) < seconds):
        took.append(step())
    return float(np.median(took))


class Batches:
    """This rank's rows of each global batch: stream windows (truncated BPTT) and random windows,
    the tokenizer's augmentation (music: transposition), the objective; drawn from one numpy
    generator seeded alike on every rank, so every rank draws the same global batch."""

    def __init__(self, plan: Plan, tokenizer: Tokenizer, device: torch.device, group: Group | None):
        cfg = plan.cfg
        self.plan, self.device, self.group = plan, device, group
        self.rng = np.random.default_rng(cfg.seed)
        self.fim = FimIds.of(tokenizer)
        self.augment = tokenizer.augmentation(plan.train_tokens, cfg.transpose)
        n_causal = cfg.batch - plan.n_fim
        self.stream = StreamBatcher(plan.train_tokens, n_causal, cfg.window, self.rng) if plan.stream else None
        self.held: np.ndarray | None = None  # the stream rows' transposition, carried with their state

    def next(self) -> tuple[np.ndarray, torch.Tensor | None]:
        """(rows (b, window + 1), rows whose carried state starts over, or None)."""
        plan, reset = self.plan, None
        if self.stream is not None:
            x_causal, reset_causal = self.stream.next()
            x_fim = random_windows(plan.train_tokens, plan.n_fim, plan.cfg.window, self.rng)
            x = np.concatenate((x_causal, x_fim))
            reset = np.concatenate((reset_causal, np.ones(plan.n_fim, dtype=bool)))
        else:
            x = random_windows(plan.train_tokens, plan.cfg.batch, plan.cfg.window, self.rng)
        if self.augment is not None:
            x = self._augment(x, reset)
        x = rows_of(apply_objective(x, plan.n_fim, self.fim, self.rng), self.group)
        return x, (torch.as_tensor(rows_of(reset, self.group), device=self.device) if reset is not None else None)

    def _augment(self, x: np.ndarray, reset: np.ndarray | None) -> np.ndarray:
        """Transposed rows; a stream row that goes on from its last window keeps its interval
        (its carried state has heard the piece in that key), other rows draw theirs."""
        if self.stream is None:
            return self.augment(x, self.rng)
        n = self.stream.batch
        keep = np.zeros(len(x), dtype=bool)
        held = np.zeros(len(x), dtype=np.int64)
        if self.held is not None:
            keep[:n], held[:n] = ~reset[:n], self.held
        x = self.augment(x, self.rng, held, keep)
        self.held = held[:n]
        return x

    def state(self) -> tuple[dict, dict | None]:
        if self.stream is None:
            return self.rng.bit_generator.state, None
        held = {"held": self.held.tolist()} if self.held is not None else {}
        return self.rng.bit_generator.state, {**self.stream.state_dict(), **held}

    def restore(self, state: TrainState) -> None:
        if state.numpy_rng is not None:
            self.rng.bit_generator.state = state.numpy_rng
        else:  # a checkpoint from before the state was saved whole: a fresh draw, as then
            self.rng = np.random.default_rng(self.plan.cfg.seed + state.step)
            if self.stream is not None:
                self.stream.rng = self.rng
        if self.stream is not None and state.batcher is not None:
            self.stream.load_state_dict(state.batcher)
            held = state.batcher.get("held")
            if held is not None and len(held) == self.stream.batch:
                self.held = np.asarray(held, dtype=np.int64)


@dataclass
class Built:
    model: SeqModel  # the plain module: what checkpoints hold
    net: torch.nn.Module  # what a step runs: the model, wrapped in DDP and compiled when asked
    opt: torch.optim.Optimizer
    amp_dtype: torch.dtype | None
    scaler: torch.amp.GradScaler | None
    batches: Batches
    device: torch.device

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


def optimizer(model: SeqModel, cfg: TrainConfig, lr: float) -> torch.optim.Optimizer:
    """AdamW with weight decay on the matrices only (not embeddings, norms or biases)."""
    def decays(name: str, p: torch.Tensor) -> bool:
        return p.dim() >= 2 and "embed" not in name

    named = list(model.named_parameters())
    groups = [{"params": [p for n, p in named if decays(n, p)], "weight_decay": cfg.weight_decay},
              {"params": [p for n, p in named if not decays(n, p)], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.99), fused=True)  # fused: 25% faster on CPU


def build(plan: Plan, tokenizer: Tokenizer, device: torch.device, lr: float, group: Group | None = None,
          model: SeqModel | None = None, state: TrainState | None = None) -> Built:
    """The model (``model``: a checkpoint's, else a new one, alike on every rank), wrappers,
    optimizer and batches; ``state`` (a resumed run's) puts back the optimizer, scaler, random
    states and the batcher's cursor."""
    cfg = plan.cfg
    if group is not None:
        group.rows(cfg.batch)  # a batch that does not divide among the processes is refused here
    amp_dtype, scaler = precision(cfg.precision, device)
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    model = (model if model is not None else new_model(cfg, tokenizer, plan.train_tokens)).to(device)
    torch.manual_seed(cfg.seed + (group.rank if group is not None else 0))  # dropout differs per rank
    net = model
    if group is not None:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    if cfg.compile:
        net = torch.compile(net)
    built = Built(model, net, optimizer(model, cfg, lr), amp_dtype, scaler, Batches(plan, tokenizer, device, group),
                  device)
    if state is not None:
        _restore(built, state)
    return built


def _restore(built: Built, state: TrainState) -> None:
    if state.optimizer:
        built.opt.load_state_dict(state.optimizer)
    if state.scaler and built.scaler is not None:
        built.scaler.load_state_dict(state.scaler)
    if state.torch_rng is not None and not isinstance(built.net, torch.nn.parallel.DistributedDataParallel):
        torch.set_rng_state(state.torch_rng)
    else:  # saved by a multi-process run, or resumed in several: dropout masks other than the first steps'
        torch.manual_seed(int(torch.initial_seed()) + state.step)
    if state.cuda_rng is not None and built.device.type == "cuda":
        torch.cuda.set_rng_state_all(state.cuda_rng)
    built.batches.restore(state)


def snapshot(built: Built, state: TrainState, carried: tuple | None, one_process: bool = True) -> TrainState:
    """``state`` with what the built pieces hold now (the optimizer, random states, cursor). The
    dropout random state and the carried state differ per process: rank 0 alone saves, so they are
    kept for a run in one process only (a resumed multi-process run starts them fresh)."""
    rng, batcher = built.batches.state()
    state.numpy_rng, state.batcher = rng, batcher
    state.torch_rng = torch.get_rng_state() if one_process else None
    state.cuda_rng = torch.cuda.get_rng_state_all() if built.device.type == "cuda" and one_process else None
    state.carried = [t.detach().cpu() for t in carried] if carried is not None and one_process else None
    state.optimizer = built.opt.state_dict()
    state.scaler = built.scaler.state_dict() if built.scaler is not None else None
    return state


def carried_state(state: TrainState, model: SeqModel, device: torch.device, rows: int) -> tuple | None:
    """The saved recurrent state of the batch rows, when it was saved for ``rows`` rows."""
    axes = model.state_batch_axes
    if state.carried is None or any(t.shape[a] != rows for t, a in zip(state.carried, axes)):
        return None
    return tuple(t.to(device) for t in state.carried)


"""Training, as plan, build, fit (litgpt's setup -> main -> fit): ``make_plan`` resolves the
configuration, the split and the choices left to seqgen; ``build`` makes the model, wrappers,
optimizer and batches; ``Fit.run`` is the loop over one ``TrainState``, saved whole in every
checkpoint. ``Trainer`` strings the three together for a new run or a resumed one. Nothing
here knows about the terminal: progress and logs go to callbacks (``seqgen.train.loggers``).
"""

from __future__ import annotations

from pathlib import Path

from seqgen import checkpoint as ckpt_io
from seqgen.config import TrainConfig
from seqgen.data.cache import TokenData
from seqgen.device import resolve_device, set_threads
from seqgen.distributed import Group
from seqgen.errors import ConfigError
from seqgen.fileio import write_json
from seqgen.history import read_config
from seqgen.runs import CONFIG
from seqgen.train.build import build, measure_speed
from seqgen.train.fit import TRAIN_POINTS, Fit, TrainResult, lr_at, progress_of
from seqgen.train.loggers import Callback, Callbacks, loggers
from seqgen.train.plan import Plan, make_plan
from seqgen.train_state import TrainState
from seqgen.transfer import Start

__all__ = ["TRAIN_POINTS", "Callback", "Plan", "TrainResult", "Trainer", "lr_at", "make_plan"]
OLD_CHECKPOINT = ("the checkpoint is from an older seqgen: the batch order, the random states and the carried "
                  "state start fresh, so the resumed run is not exactly the run left alone")


class Trainer:
    """A run, planned and built: ``run()`` trains it. ``resume`` continues a checkpoint's run
    (its config with what the command changed, its choices, its whole state). ``init``
    (``seqgen.transfer.init_from``) starts a new run from a parent's weights: the parent's
    model shape, ``data`` read with the merged vocabulary, a fresh plan, optimizer and state."""

    def __init__(self, cfg: TrainConfig, data: TokenData, out: Path, resume: ckpt_io.Checkpoint | None = None,
                 callback: Callback | None = None, group: Group | None = None, init: Start | None = None):
        if init is not None:
            if resume is not None:
                raise ConfigError("--init starts a new run from another run's weights; --resume continues this "
                                  "one: give one of them")
            if data.tokenizer != init.tokenizer:
                raise ConfigError("--init: the corpus must be read with the merged vocabulary (init.tokenizer)")
            cfg = init.train_config(cfg)
        device = group.device if group is not None else resolve_device(cfg.device)
        world = group.world if group is not None else 1
        set_threads(cfg.threads)
        self.out, self.data, self.resumed, self.init = Path(out), data, resume, init
        if resume is not None:
            plan = make_plan(cfg, data, device.type, world, choices=resume.choices or {})
            state = resume.state
            if progress_of(plan.cfg, state.step, state.elapsed) >= 1.0:
                raise ConfigError(f"the run already reached its budget (step {state.step}); "
                                  "give --steps or --time to train further")
        else:
            def measure(c: TrainConfig, tokens) -> float:
                speed = measure_speed(c, tokens, data.tokenizer, device, world)
                return group.decide(speed)[0] if group is not None else speed  # rank 0's, so all choose alike

            plan, state = make_plan(cfg, data, device.type, world, measure=measure), TrainState()
        self.plan, self.cfg = plan, plan.cfg
        self.notes = [OLD_CHECKPOINT] if resume is not None and not resume.has_state else []
        model = resume.model if resume is not None else init.model(plan.cfg.dropout) if init is not None else None
        built = build(plan, data.tokenizer, device, lr_at(plan.cfg, 0, 0.0), group,
                      model=model, state=state if resume is not None else None)
        main = group is None or group.is_main
        callbacks = Callbacks(callback, *loggers(plan.cfg.log, self.out)) if main else Callbacks()
        self.fit = Fit(plan, built, data, out, state, callbacks, group, self.notes)

    @property
    def model(self):
        return self.fit.built.model

    def evaluate(self) -> float:
        return self.fit.evaluate()

    def request_stop(self, signum: int) -> None:
        self.fit.request_stop(signum)

    def run(self) -> TrainResult:
        if self.fit.main:
            self.out.mkdir(parents=True, exist_ok=True)
            self._write_config()
        return self.fit.run()

    def _write_config(self) -> None:
        """config.json: what the run trains with, written when it starts. A resumed run keeps the
        first run's record (its choices, with the reasons) and appends what the resume changed."""
        model, cfg = self.fit.built.model, self.cfg
        if self.resumed is not None:
            record, _ = read_config(self.out)
            if record:
                old = self.resumed.train.to_dict()
                changed = {k: [old.get(k), v] for k, v in cfg.to_dict().items() if old.get(k) != v}
                record["train"] = cfg.to_dict()
                record.setdefault("resumes", []).append({"step": self.fit.state.step, "changed": changed})
                write_json(self.out / CONFIG, record)
                return
        record = {
            "train": cfg.to_dict(), "choices": self.plan.choices, "model": model.config.to_dict(),
            "tokenizer": self.data.tokenizer.to_dict(), "corpus": self.data.source, "params": model.num_params(),
            "tokens": {"train": len(self.plan.train_tokens), "val": len(self.plan.val_tokens)},
        }
        if self.init is not None:
            record["init"] = self.init.note  # where the weights came from
        write_json(self.out / CONFIG, record)

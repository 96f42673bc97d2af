"""What past runs did, read from their folders: ``config.json`` and ``metrics.jsonl``.

A run folder holds ``config.json`` (the resolved configuration, written when training starts),
``metrics.jsonl`` (one record a line: ``seqgen.records``, read back by its ``from_json``) and the
checkpoints ``last.pt`` and ``best.pt``. This module only reads JSON and looks at file names;
it loads no checkpoint, so it needs neither torch nor music21 (the file names come from
``seqgen.runs``), and it returns plain data for the CLI to draw.

A metrics line that is not a JSON object with a step and a validation loss (a run killed in the
middle of a write, a damaged file) is skipped and counted, never raised.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqgen.errors import RunError
from seqgen.records import EvalRecord, StepRecord, from_json
from seqgen.runs import BUNDLE_FILE, CONFIG, LAST, METRICS, RUN_FILES, is_run

X_AXES = ("steps", "time", "tokens")
SORTS = ("date", "loss", "name", "steps")
LN2 = math.log(2)


@dataclass
class Metrics:
    """The evaluations of a run in file order, and the lines that could not be read."""

    records: list[EvalRecord] = field(default_factory=list)  # the evaluations
    train: list[StepRecord] = field(default_factory=list)  # training-loss points between them
    bad_lines: list[int] = field(default_factory=list)  # 1-based line numbers
    exists: bool = True

    def problem(self, path: Path) -> str | None:
        """One line about damaged lines, or None."""
        if not self.bad_lines:
            return None
        n = len(self.bad_lines)
        where = ", ".join(str(i) for i in self.bad_lines[:5]) + (", ..." if n > 5 else "")
        return f"{path}: skipped {n} damaged line{'s' if n > 1 else ''} (line{'s' if n > 1 else ''} {where})"


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def read_metrics(run: Path) -> Metrics:
    """The evaluation records of ``run/metrics.jsonl``; an absent file gives no records."""
    path = Path(run) / METRICS
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Metrics(exists=False)
    except OSError as e:
        raise RunError(f"cannot read {path}: {e.strerror or e}") from None
    m = Metrics()
    for i, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = from_json(json.loads(line))
        except ValueError:  # not JSON, or not UTF-8
            rec = None
        if rec is None:
            m.bad_lines.append(i)
        else:
            (m.records if isinstance(rec, EvalRecord) else m.train).append(rec)
    return m


def read_config(run: Path) -> tuple[dict, str | None]:
    """(``config.json`` as a dict, None), or ({}, the reason it could not be read)."""
    path = Path(run) / CONFIG
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, f"{path} is missing"
    except (OSError, ValueError) as e:
        return {}, f"{path} cannot be read ({type(e).__name__})"
    if not isinstance(cfg, dict):
        return {}, f"{path} is not a JSON object"
    return cfg, None


def find_runs(root: Path, depth: int = 3) -> list[Path]:
    """Run folders at or under ``root`` (a run folder itself, or folders of runs, ``depth`` deep)."""
    root = Path(root)
    if not root.exists():
        raise RunError(f"{root} does not exist; train a run with `seqgen train CORPUS` or name a folder of runs")
    if not root.is_dir():
        raise RunError(f"{root} is not a folder of runs")
    if is_run(root):
        return [root]
    found, level = [], [root]
    for _ in range(depth):
        nxt = []
        for folder in level:
            try:
                children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
            except OSError:
                continue
            for child in children:
                (found if is_run(child) else nxt).append(child)
        level = nxt
    return found


# ---- one run, summed up ----------------------------------------------------------------------


@dataclass
class Curve:
    """A run's evaluations as columns, for plotting. ``best`` indexes the lowest validation loss."""

    name: str
    steps: list[int]
    elapsed: list[float]  # seconds of training
    tokens: list[int | None]  # tokens seen: step x batch x window (None when the config is unknown)
    val_loss: list[float]
    best: int
    train: dict[str, list] = field(default_factory=dict)  # the training curve: steps, time, tokens, loss

    def x(self, axis: str) -> list:
        return {"steps": self.steps, "time": self.elapsed, "tokens": self.tokens}[axis]

    def train_points(self, axis: str) -> list[tuple[float, float]]:
        """(x, training loss) along the run: every training record and evaluation, in step order."""
        return [(a, b) for a, b in zip(self.train.get(axis, []), self.train.get("loss", []))
                if a is not None and b is not None]


@dataclass
class Run:
    path: Path
    name: str
    config: dict
    metrics: Metrics
    exports: list[dict]
    problems: list[str]

    # -- figures, each None when the files do not say --------------------------------------
    @property
    def train(self) -> dict:
        t = self.config.get("train")
        return t if isinstance(t, dict) else {}

    @property
    def model(self) -> dict:
        m = self.config.get("model")
        return m if isinstance(m, dict) else {}

    @property
    def parent(self) -> str | None:
        """The checkpoint a run started from (``seqgen train --init``), or None."""
        init = self.config.get("init")
        return str(init["from"]) if isinstance(init, dict) and init.get("from") else None

    @property
    def last(self) -> EvalRecord | None:
        return self.metrics.records[-1] if self.metrics.records else None

    @property
    def best(self) -> EvalRecord | None:
        recs = self.metrics.records
        return min(recs, key=lambda r: r.val_loss) if recs else None

    def tokens_at(self, step: int) -> int | None:
        batch, window = self.train.get("batch"), self.train.get("window")
        if not (isinstance(batch, int) and isinstance(window, int)):
            return None
        return int(step) * batch * window

    @property
    def when(self) -> float | None:
        """Unix time of the last thing the run wrote (its last evaluation, else its newest file)."""
        last = self.last
        if last is not None and _number(last.time) and last.time > 0:
            return float(last.time)
        times = [(self.path / n).stat().st_mtime for n in RUN_FILES if (self.path / n).is_file()]
        return max(times) if times else None

    @property
    def finished(self) -> bool:
        """The last evaluation was at the end of the budget (progress 1)."""
        last = self.last
        return bool(last is not None and _number(last.progress) and last.progress >= 1.0)

    @property
    def resumable(self) -> bool:
        """``last.pt`` exists and the budget is not used up (a finished run extends with
        ``--resume --steps N`` or ``--time``, but there is nothing left to resume)."""
        return (self.path / LAST).is_file() and not self.finished

    @property
    def state(self) -> str:
        if not (self.path / LAST).is_file():
            return "no checkpoint"
        return "finished" if self.finished else "resumable"

    def curve(self, name: str | None = None) -> Curve:
        recs = self.metrics.records
        if not recs:
            raise RunError(self.no_evaluations())
        val = [r.val_loss for r in recs]
        return Curve(
            name=name or self.name,
            steps=[r.step for r in recs],
            elapsed=[r.elapsed for r in recs],
            tokens=[self.tokens_at(r.step) for r in recs],
            val_loss=val,
            best=min(range(len(val)), key=val.__getitem__),
            train=self._train_curve(),
        )

    def _train_curve(self) -> dict[str, list]:
        points = sorted(self.metrics.train + [r for r in self.metrics.records if _number(r.loss)],
                        key=lambda r: r.step)
        return {"steps": [r.step for r in points],
                "time": [r.elapsed if _number(r.elapsed) else None for r in points],
                "tokens": [self.tokens_at(r.step) for r in points],
                "loss": [r.loss for r in points]}

    def no_evaluations(self) -> str:
        path = self.path / METRICS
        if not self.metrics.exists:
            return (
                f"{self.path} has no evaluations yet ({METRICS} is absent; the first comes after a tenth of the budget)"
            )
        if self.metrics.bad_lines:
            return f"{path} has no readable evaluation ({len(self.metrics.bad_lines)} damaged line(s))"
        return f"{self.path} has no evaluations yet ({METRICS} is empty; the first comes after a tenth of the budget)"

    def to_dict(self) -> dict:
        """The figures ``seqgen runs --json`` prints (plain JSON types)."""
        best, last = self.best, self.last
        step = last.step if last else None
        elapsed = last.elapsed if last and _number(last.elapsed) else None
        when = self.when
        return {
            "name": self.name,
            "path": str(self.path),
            "corpus": self.config.get("corpus"),
            "init_from": self.parent,
            "model": self.model.get("type") or self.train.get("model"),
            "size": self.train.get("size"),
            "layers": self.model.get("layers"),
            "dim": self.model.get("dim"),
            "params": self.config.get("params"),
            "batch": self.train.get("batch"),
            "window": self.train.get("window"),
            "steps": step,
            "elapsed_s": elapsed,
            "tokens_seen": self.tokens_at(step) if step is not None else None,
            "evaluations": len(self.metrics.records),
            "best_val_loss": best.val_loss if best else None,
            "best_val_bits": best.val_bits if best else None,
            "best_step": best.step if best else None,
            "last_val_loss": last.val_loss if last else None,
            "when": when,
            "when_iso": _iso(when),
            "state": self.state,
            "resumable": self.resumable,
            "finished": self.finished,
            "exported": bool(self.exports),
            "exports": self.exports,
            "problems": self.problems,
        }


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    from datetime import datetime

    return datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")


def load_run(path: Path, bundles: list[dict] = ()) -> Run:
    """Read one run folder (it must hold at least one of the run files); its exports are looked
    up among ``bundles`` (from ``find_bundles``)."""
    path = Path(path)
    if not is_run(path):
        raise RunError(f"{path} is not a run folder (it holds none of {', '.join(RUN_FILES)})")
    config, problem = read_config(path)
    metrics = read_metrics(path)
    problems = [p for p in (problem, metrics.problem(path / METRICS)) if p]
    exports = exports_of(path, list(bundles))
    return Run(path, path.resolve().name, config, metrics, exports, problems)


def list_runs(root: Path, export_roots: list[Path] | None = None, sort: str = "date") -> list[Run]:
    """Every run under ``root``, read and sorted (date: newest first; loss: lowest first)."""
    if sort not in SORTS:
        raise RunError(f"cannot sort by {sort!r}; expected one of {', '.join(SORTS)}")
    root = Path(root)
    if export_roots is None:
        export_roots = [Path("exports"), root.parent / "exports"]  # seqgen.export.EXPORTS, and beside root
    bundles = find_bundles(export_roots)
    runs = [load_run(p, bundles) for p in find_runs(root)]
    inf = math.inf
    keys = {
        "date": lambda r: -(r.when or 0.0),
        "loss": lambda r: r.best.val_loss if r.best else inf,
        "name": lambda r: r.name,
        "steps": lambda r: -(r.last.step if r.last else -1),
    }
    return sorted(runs, key=keys[sort])


# ---- exports -------------------------------------------------------------------------------
# An export bundle (exports/<name>/seqgen.json) records in export.source the checkpoint it was
# made from, as the path given then (relative to the folder the export ran in), and export.step.


def find_bundles(roots: list[Path]) -> list[dict]:
    """{path, source, step} of each bundle in the given export folders (unreadable ones skipped)."""
    seen, bundles = set(), []
    for root in roots:
        try:
            metas = sorted(Path(root).glob(f"*/{BUNDLE_FILE}"))
        except OSError:
            continue
        for meta in metas:
            key = os.path.realpath(meta)
            if key in seen:
                continue
            seen.add(key)
            try:
                info = json.loads(meta.read_text(encoding="utf-8")).get("export") or {}
            except (OSError, ValueError, AttributeError):
                continue
            if isinstance(info.get("source"), str):
                bundles.append({"path": meta.parent, "source": info["source"], "step": info.get("step"),
                                "base": Path(root).resolve().parent})
    return bundles


def exports_of(run: Path, bundles: list[dict]) -> list[dict]:
    """The bundles made from one of ``run``'s checkpoints: {path, step}."""
    run_real = Path(os.path.realpath(run))
    found = []
    for b in bundles:
        src = Path(b["source"])
        candidates = [src] if src.is_absolute() else [Path.cwd() / src, b["base"] / src]
        for c in candidates:
            folder = c.parent if c.suffix == ".pt" else c
            if Path(os.path.realpath(folder)) == run_real:
                found.append({"path": str(b["path"]), "step": b["step"]})
                break
    return found

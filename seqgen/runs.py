"""Run folders and bundles on disk: their file names, and what a path names.

A run folder ``runs/<name>/`` holds ``last.pt``, ``best.pt``, ``config.json`` and
``metrics.jsonl``; an ONNX bundle folder holds ``model.onnx`` and ``seqgen.json``. ``locate``
is the one place that decides what a RUN argument names (a run folder, a checkpoint file, a
bundle, or nothing: the most recent run); every command goes through it. It imports nothing
heavy: opening what it found is ``seqgen.checkpoint.open_checkpoint`` (torch) or
``seqgen.engines.load.open_generator`` (either engine).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from seqgen.errors import CheckpointError

RUNS = Path("runs")
LAST, BEST = "last.pt", "best.pt"
CONFIG, METRICS = "config.json", "metrics.jsonl"
BUNDLE_FILE, MODEL_FILE = "seqgen.json", "model.onnx"


@dataclass(frozen=True)
class Located:
    kind: Literal["checkpoint", "bundle"]
    path: Path  # the checkpoint file, or the bundle folder


def new_run_dir(name: str, root: Path = RUNS) -> Path:
    """``runs/<name>``, or ``runs/<name>-2``, ``-3``... when taken."""
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "run"
    path = root / base
    i = 2
    while path.exists():
        path = root / f"{base}-{i}"
        i += 1
    return path


def latest_run(root: Path = RUNS) -> Path:
    runs = [p.parent for p in root.glob(f"*/{LAST}")]
    if not runs:
        raise CheckpointError(f"no runs found under {root}/; train one with `seqgen train CORPUS`, or name a run folder")
    return max(runs, key=lambda p: (p / LAST).stat().st_mtime)


def is_bundle(path: Path) -> bool:
    return Path(path).is_dir() and (Path(path) / BUNDLE_FILE).exists()


def locate(run: Path | str | None, which: Literal["best", "last"] = "best") -> Located:
    """What a RUN argument names: a checkpoint file (``best.pt`` of a run folder unless
    ``which="last"``, falling back to the other), or an ONNX bundle folder. None: the most
    recent run under ``runs/``."""
    if run is None:
        run = latest_run()
    run = Path(run)
    if is_bundle(run):
        return Located("bundle", run)
    if run.is_file():
        return Located("checkpoint", run)
    if not run.exists():
        raise CheckpointError(f"run {run} does not exist")
    if not run.is_dir():
        raise CheckpointError(f"{run} is not a run folder or checkpoint")
    order = (BEST, LAST) if which == "best" else (LAST, BEST)
    for name in order:
        if (run / name).exists():
            return Located("checkpoint", run / name)
    raise CheckpointError(f"{run} has no checkpoint ({BEST} or {LAST}) and is no ONNX bundle ({BUNDLE_FILE}); "
                          "is it a seqgen run folder?")

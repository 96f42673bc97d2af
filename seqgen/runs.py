"""Run folders: ``runs/<name>/`` with last.pt, best.pt, config.json and metrics.jsonl."""

from __future__ import annotations

import re
from pathlib import Path

from seqgen.checkpoint import BEST, LAST
from seqgen.errors import CheckpointError

RUNS = Path("runs")


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


def checkpoint_path(run: Path | None, which: str = "best") -> Path:
    """The checkpoint to use for a run argument (folder or file; None: the most recent run)."""
    if run is None:
        run = latest_run()
    run = Path(run)
    if run.is_file():
        return run
    if not run.exists():
        raise CheckpointError(f"run {run} does not exist")
    if not run.is_dir():
        raise CheckpointError(f"{run} is not a run folder or checkpoint")
    order = (BEST, LAST) if which == "best" else (LAST, BEST)
    for name in order:
        if (run / name).exists():
            return run / name
    raise CheckpointError(f"{run} has no checkpoint ({BEST} or {LAST}); is it a seqgen run folder?")

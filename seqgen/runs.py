"""Run folders and bundles on disk: their file names, and what a path names.

A run folder ``runs/<name>/`` holds ``last.pt``, ``best.pt``, ``config.json`` and
``metrics.jsonl``; an ONNX bundle folder holds ``model.onnx`` and ``seqgen.json``. ``locate``
is the one place that decides what a RUN argument names (a run folder, a checkpoint file, a
bundle, or nothing: the most recent run); every command goes through it. It imports nothing
heavy: opening what it found is ``seqgen.checkpoint.open_checkpoint`` (torch) or
``seqgen.engines.load.open_generator`` (either engine).
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

from seqgen.errors import CheckpointError, FileWriteError, RunLockedError

RUNS = Path("runs")
LAST, BEST = "last.pt", "best.pt"
CONFIG, METRICS = "config.json", "metrics.jsonl"
BUNDLE_FILE, MODEL_FILE = "seqgen.json", "model.onnx"
LOOP_FILE = "sample_loop.onnx"  # the step graph in a sampling loop (seqgen.engines.loop), where the export wrote one
LOCK = ".lock"
RUN_FILES = (CONFIG, METRICS, LAST, BEST)


@dataclass(frozen=True)
class Located:
    kind: Literal["checkpoint", "bundle"]
    path: Path  # the checkpoint file, or the bundle folder


def new_run_dir(name: str, root: Path = RUNS) -> Path:
    """Create and return ``runs/<name>``, or ``runs/<name>-2``, ``-3``... when taken. The folder
    is made here (exclusively), so two trainings started at once never pick the same one."""
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "run"
    try:
        root.mkdir(parents=True, exist_ok=True)
        i = 1
        while True:
            path = root / (base if i == 1 else f"{base}-{i}")
            try:
                path.mkdir()
                return path
            except FileExistsError:
                i += 1
    except OSError as e:
        raise FileWriteError(f"cannot create a run folder under {root}: {e.strerror or e}") from None


@contextlib.contextmanager
def run_lock(run: Path) -> Iterator[None]:
    """Hold the run folder for one training. A second training into it is refused at once,
    naming the process that holds it. The lock is an ``flock`` on ``<run>/.lock``: the kernel
    releases it when its process ends in any way (kill -9 included), so a lock left by a dead
    process is simply taken over, never a permanent "locked"."""
    import fcntl

    run = Path(run)
    try:
        run.mkdir(parents=True, exist_ok=True)
        fd = os.open(run / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise FileWriteError(f"cannot lock {run}: {e.strerror or e}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            raise RunLockedError(f"{run} is being trained by process {holder}; wait for it to end, "
                                 "or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def latest_run(root: Path = RUNS) -> Path:
    runs = [p.parent for p in root.glob(f"*/{LAST}")]
    if not runs:
        raise CheckpointError(
            f"no runs found under {root}/; train one with `seqgen train CORPUS`, or name a run folder"
        )
    return max(runs, key=lambda p: (p / LAST).stat().st_mtime)


def is_run(path: Path) -> bool:
    return path.is_dir() and any((path / name).is_file() for name in RUN_FILES)


def _named(spec: str | Path, root: Path = RUNS) -> Path:
    """A path as given, or a bare name under ``root`` (``shake`` -> ``runs/shake``) when only that exists."""
    path = Path(spec)
    if not path.exists() and not path.is_absolute() and (root / path).exists():
        return root / path
    return path


def resolve_run(spec: str | Path, root: Path = RUNS) -> Path:
    """A run folder from a path, a bare name under ``root``, or one of its files."""
    from seqgen.errors import RunError

    path = _named(spec, root)
    if not path.exists():
        raise RunError(f"run {spec} does not exist (looked for {path}" + ("" if path.parent != Path(".") else
                       f" and {root / path}") + ")")
    if path.is_file() and path.parent.is_dir() and is_run(path.parent):
        path = path.parent  # a checkpoint or metrics file names its run
    if not is_run(path):
        raise RunError(f"{spec} is not a run folder (it holds none of {', '.join(RUN_FILES)})")
    return path


def is_bundle(path: Path) -> bool:
    return Path(path).is_dir() and (Path(path) / BUNDLE_FILE).exists()


def locate(run: Path | str | None, which: Literal["best", "last"] = "best") -> Located:
    """What a RUN argument names: a checkpoint file (``best.pt`` of a run folder unless
    ``which="last"``, falling back to the other), or an ONNX bundle folder. None: the most
    recent run under ``runs/``."""
    run = latest_run() if run is None else _named(run)
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

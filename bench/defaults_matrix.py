"""The corpus matrix that judges seqgen's defaults, in one table.

    python bench/defaults_matrix.py                       # every row, the budgets below (about 25 minutes)
    python bench/defaults_matrix.py --rows bach,folk      # some rows
    python bench/defaults_matrix.py --scale 0.1 -- --seed 1   # shorter budgets; extra `seqgen train` options
    python bench/defaults_matrix.py --rows none --corpus code=~/src/project@120   # other corpora (NAME=PATH@SECONDS)
    python bench/defaults_matrix.py --rows quartets,palestrina,bach --time 120 --quick   # the stop table, 2 min each

Rows (default settings, one run at a time): tinyshakespeare 2 and 5 minutes, its first 200 KB
5 minutes, bach-chorales 5 minutes, folk-abc 5 minutes, and a folder of the MIDI files in
../shared/music 2 minutes, and 24 quartets and madrigals of music21 written as multitrack MIDI
(``bench/multitrack_corpus.py``) 2 minutes, and the same way 24 of Monteverdi's madrigals
and 24 of Palestrina's mass movements, 2 minutes each. Each is `seqgen train CORPUS --time T`,
then `seqgen eval RUN --json` (the best checkpoint, whole validation split). Columns:
- val_loss: nats per token, state carried over the whole split; windowed: 64-token windows;
- carried-reset: val_loss minus the loss with the state reset every 2,048 tokens (above 0: drift);
- late drift: carried minus reset loss over the last 5 segments of 2,000 tokens (the state's
  drift where it has been carried longest);
- infill: nats per token on the middle spans of fill-in-the-middle examples cut from the split;
- best at: the step of the best checkpoint as a share of the run's steps;
- train-val: the training loss (moving average) minus the validation loss at the last evaluation
  (well below 0: overfitting);
- the stop table (``--stops``, and always in --json): where the best evaluation came (share of
  the budget), where the run ended (1.00: it used the whole budget), end minus best, the last
  evaluation's validation loss minus the best one's (what the run lost by going on), the training
  loss at the end over the best validation loss (under 1: the model fits training text better), and
  whether the target holds: best in the last third of the run, or an end within a tenth
  of the budget after the best (one training step of slack).
Run it with nothing else busy: timings on two cores are fragile.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
SHAKESPEARE = SHARED / "corpora" / "tinyshakespeare.txt"
MUSIC = SHARED / "music"
ROWS = [("shakespeare-2m", "shakespeare", 120), ("shakespeare-5m", "shakespeare", 300),
        ("shakespeare-200k", "shakespeare-200k", 300), ("bach", "bach-chorales", 300),
        ("folk", "folk-abc", 300), ("midi-folder", "midi-folder", 120), ("quartets", "quartets", 120),
        ("madrigals", "madrigals", 120), ("palestrina", "palestrina", 120)]
SLACK = 0.005  # of the budget: an evaluation comes at the first step past its mark


def seqgen(*args: str) -> str:
    cmd = [sys.executable, "-m", "seqgen", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr.strip()[-2000:]}")
    return proc.stdout


def corpus(kind: str, tmp: Path) -> str:
    if kind.startswith("path:"):
        return kind[5:]
    if kind == "shakespeare":
        return str(SHAKESPEARE)
    if kind == "shakespeare-200k":
        path = tmp / "shakespeare-200k.txt"
        path.write_bytes(SHAKESPEARE.read_bytes()[: 200 * 1024])
        return str(path)
    if kind == "midi-folder":
        folder = tmp / "shared-midi"
        folder.mkdir(exist_ok=True)
        for f in MUSIC.glob("*.mid"):
            shutil.copy(f, folder / f.name)
        return str(folder)
    if kind in ("quartets", "madrigals", "palestrina"):  # multitrack corpora from music21's, one MIDI track per part
        sys.path.insert(0, str(HERE))
        from multitrack_corpus import write_corpus

        folder = tmp / kind
        write_corpus(folder, kind=kind)
        return str(folder)
    return kind  # a built-in corpus


def run_row(name: str, spec: str, seconds: float, extra: list[str], tmp: Path, quick: bool = False,
            evaluate: bool = True) -> dict:
    out = tmp / name
    seqgen("train", spec, "--time", f"{seconds:g}s", "--out", str(out), "--quiet", *extra)
    light = ["--compositions", "1", "--no-check-copies"] if quick else []
    ev = json.loads(seqgen("eval", str(out), "--json", *light)) if evaluate else None
    return row_of(name, out, ev)


def row_of(name: str, out: Path, ev: dict | None) -> dict:
    """The row of a finished run: its metrics.jsonl and config.json, and ``seqgen eval``'s answer
    (None: the losses are the training's estimates at the best evaluation)."""
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    records = [r for r in records if r.get("event") != "train"]  # the evaluations
    best = [r for r in records if r.get("best")][-1]
    last = records[-1]
    ev = ev or {"val_loss": best["val_loss"], "val_loss_windowed": None, "val_loss_reset": None}
    seg = ev.get("val_drift_by_segment") or []
    config = json.loads((out / "config.json").read_text())
    reset = ev["val_loss_reset"]
    return {
        "row": name, "val_loss": ev["val_loss"], "windowed": ev["val_loss_windowed"], "evaluated": "tokens" in ev,
        "infill": ev.get("infill_loss"),
        "carried_minus_reset": ev["val_loss"] - reset if reset is not None else None,
        "segment_drift": sum(seg[-5:]) / len(seg[-5:]) if seg else None,
        "segments": len(seg), "best_at": best["step"] / last["step"], "best_step": best["step"],
        "steps": last["step"], "train_minus_val": last["loss"] - last["val_loss"],
        "best_progress": best["progress"], "end_progress": last["progress"],
        "last_minus_best": last["val_loss"] - best["val_loss"], "train_over_best": last["loss"] / best["val_loss"],
        "target": best["progress"] >= 2 / 3 or last["progress"] - best["progress"] <= 0.1 + SLACK,
        "patience": config["train"].get("patience"), "eval_every": config["train"].get("eval_every"),
        "tokens_per_s": last["tokens_per_s"], "split": ev.get("split"), "choices": config.get("choices"),
        "train": {k: config["train"][k] for k in ("size", "dim", "batch", "lr", "dropout", "weight_decay",
                                                  "transpose") if k in config["train"]},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="", help="comma-separated row names or prefixes (default: all)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every budget (e.g. 0.1 for a smoke run)")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    ap.add_argument("--time", type=float, default=None, help="every row's budget in seconds (instead of its own)")
    ap.add_argument("--quick", action="store_true", help="evaluate with one composition and no copy check")
    ap.add_argument("--stops", action="store_true", help="also print the stop table at the end")
    ap.add_argument("--save", type=Path, default=None, help="also write the rows as JSON to this file")
    ap.add_argument("--no-eval", action="store_true", help="skip `seqgen eval`: val_loss is the training's estimate "
                    "at the best evaluation (the stop table needs nothing more)")
    ap.add_argument("--runs", type=Path, nargs="*", default=[], help="rows of runs trained before (their folders)")
    ap.add_argument(
        "--corpus",
        action="append",
        default=[],
        metavar="NAME=PATH[@SECONDS]",
        help="one more row: any corpus seqgen reads (a file, a folder, a built-in name); 120 s unless given",
    )
    ap.add_argument("extra", nargs="*", help="more `seqgen train` options, after --")
    a = ap.parse_args()
    wanted = [w for w in a.rows.split(",") if w]
    rows = [r for r in ROWS if not wanted or any(r[0].startswith(w) for w in wanted)]
    for spec in a.corpus:
        name, _, rest = spec.partition("=")
        path, _, secs = rest.rpartition("@") if "@" in rest else (rest, "", "")
        if not name or not path:
            raise SystemExit(f"--corpus wants NAME=PATH[@SECONDS], got {spec!r}")
        rows.append((name, "path:" + str(Path(path).expanduser()), float(secs or 120)))
    if any(kind.startswith("shakespeare") for _, kind, _ in rows) and not SHAKESPEARE.exists():
        raise SystemExit(f"{SHAKESPEARE} not found")
    results = []
    if not a.json:
        print(f"{'row':<17} {'val_loss':>8} {'windowed':>8} {'carr-reset':>10} {'late drift':>10} {'infill':>7} "
              f"{'best at':>8} {'train-val':>9} {'steps':>6}  settings", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, kind, seconds in rows:
            budget = (a.time if a.time is not None else seconds) * a.scale
            r = run_row(name, corpus(kind, Path(tmp)), budget, a.extra, Path(tmp), a.quick, not a.no_eval)
            results.append(r)
            if a.save is not None:
                a.save.write_text(json.dumps(results, indent=2))
            if not a.json:
                print_row(r)
        for run in a.runs:
            results.append(row_of(run.name, run, None))
            if not a.json:
                print_row(results[-1])
    if a.json:
        print(json.dumps(results, indent=2))
    elif a.stops:
        print_stops(results)


def print_row(r: dict) -> None:
    def num(value, form):
        return format(value, form) if value is not None else "-"

    t = r["train"]
    print(f"{r['row']:<17} {r['val_loss']:8.4f} {num(r['windowed'], '8.4f'):>8} "
          f"{num(r['carried_minus_reset'], '+10.4f'):>10} {num(r['segment_drift'], '+.3f'):>10} "
          f"{num(r.get('infill'), '7.4f'):>7} {r['best_at']:8.2f} "
          f"{r['train_minus_val']:+9.3f} {r['steps']:6d}  "
          f"dim {t.get('dim') or t.get('size')} batch {t.get('batch')} lr {t.get('lr')} "
          f"dropout {t.get('dropout')} wd {t.get('weight_decay')} transpose {t.get('transpose')}", flush=True)


def print_stops(results: list[dict]) -> None:
    print(f"\n{'row':<17} {'best at':>7} {'end':>5} {'end-best':>8} {'last-best':>9} {'val_loss':>8} "
          f"{'train/best':>10} {'patience':>8}  target")
    for r in results:
        every = f"{r['patience']}x{r['eval_every']:.0%}" if r["patience"] else "-"
        print(f"{r['row']:<17} {r['best_progress']:7.2f} {r['end_progress']:5.2f} "
              f"{r['end_progress'] - r['best_progress']:8.2f} {r['last_minus_best']:+9.3f} {r['val_loss']:8.4f} "
              f"{r['train_over_best']:10.3f} {every:>8}  {'yes' if r['target'] else 'no'}")


if __name__ == "__main__":
    main()

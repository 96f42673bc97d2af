"""How fast seqgen prepares a corpus (a cold token cache), and with how much memory.

    python bench/prepare_speed.py                      # 1,200 MIDI files, a 300 MB text file
    python bench/prepare_speed.py --text-mb 1024       # a 1 GB text file
    python bench/prepare_speed.py --midi-files 5000 --workers 1,2,4

Inputs are built in a temporary folder and removed at the end: a folder of MIDI files copied
many times from --music (default ../shared/music), and a text file made by repeating --text
(default tinyshakespeare) to --text-mb megabytes. Each measurement runs in a fresh process
with its own empty token cache:

- MIDI: ``load_corpus(folder, workers=N)`` for one worker and for all (files/s, hashing and
  the cache write included; the files are read once beforehand so the disk cache is warm).
- text: ``load_corpus(file)`` alone, and the whole ``seqgen train FILE --steps 1 --size tiny
  --quiet`` (seconds and peak RSS of the process).

Timings on a machine with other work are fragile; run it with nothing else busy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
DEFAULT_TEXT = SHARED / "corpora" / "tinyshakespeare.txt"
DEFAULT_MUSIC = SHARED / "music"

# Runs in a child process: prepares one corpus into an empty cache, prints seconds and counts.
PREPARE = """
import hashlib, json, sys, time
from seqgen.data.load import load_corpus
workers = None if sys.argv[2] == "all" else int(sys.argv[2])
start = time.perf_counter()
data = load_corpus(sys.argv[1], workers=workers, progress=None, report=None)
print(json.dumps({"seconds": time.perf_counter() - start, "tokens": len(data),
                  "pieces": len(data.meta.get("pieces", [])), "skipped": len(data.meta.get("skipped", [])),
                  # music only: hashing a large text stream would read it all into the page cache (and RSS)
                  "digest": hashlib.sha256(data.tokens).hexdigest()[:16] if data.meta.get("kind") == "music" else ""}))
"""


def run_child(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stdout) of a child process, waited for with wait4."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{err.read().strip()[-2000:]}")
        rss_mb = usage.ru_maxrss / 1024  # kilobytes on Linux
        return seconds, rss_mb, out.read()


def fresh_env(root: Path, name: str) -> dict:
    cache = root / f"cache-{name}"
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir()
    return {**os.environ, "SEQGEN_CACHE": str(cache)}


def build_midi(folder: Path, source: Path, count: int) -> int:
    """``count`` MIDI files copied from ``source`` (round robin); returns their total bytes."""
    files = sorted(p for p in source.iterdir() if p.suffix.lower() in (".mid", ".midi"))
    if not files:
        raise SystemExit(f"no MIDI files in {source}")
    folder.mkdir()
    blobs = [(p.stem, p.read_bytes()) for p in files]
    total = 0
    for i in range(count):
        stem, data = blobs[i % len(blobs)]
        (folder / f"{i:06d}_{stem}.mid").write_bytes(data)
        total += len(data)
    return total


def build_text(path: Path, source: Path | None, megabytes: float) -> int:
    """A text file of about ``megabytes`` MB: ``source`` repeated (or generated lines)."""
    if source is not None and source.exists():
        block = source.read_bytes()
    else:
        block = "".join(f"line {i}: the quick brown fox jumps over the lazy dog\n" for i in range(20000)).encode()
    target = int(megabytes * (1 << 20))
    written = 0
    with open(path, "wb") as fh:
        while written < target:
            piece = block[: target - written]
            fh.write(piece)
            written += len(piece)
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--midi-files", type=int, default=1200, help="MIDI files in the folder (0: no MIDI run)")
    ap.add_argument("--workers", default="1,all", help="worker counts to compare, e.g. 1,2,all")
    ap.add_argument("--text-mb", type=float, default=300, help="size of the text file in MB (0: no text run)")
    ap.add_argument("--music", default=str(DEFAULT_MUSIC), help="folder whose MIDI files are copied")
    ap.add_argument("--text", default=str(DEFAULT_TEXT), help="text repeated to make the file")
    ap.add_argument("--tmp", default=None, help="where to build the inputs (default: the system's temp folder)")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    a = ap.parse_args()
    py = sys.executable
    rows = []
    with tempfile.TemporaryDirectory(prefix="seqgen-prepare-", dir=a.tmp) as tmp:
        root = Path(tmp)
        if a.midi_files > 0:
            folder = root / "midi"
            size = build_midi(folder, Path(a.music), a.midi_files)
            for f in folder.iterdir():  # warm the disk cache, so the first run is not the only cold one
                f.read_bytes()
            for w in a.workers.split(","):
                seconds, rss, out = run_child([py, "-c", PREPARE, str(folder), w], fresh_env(root, "midi"))
                info = json.loads(out)
                rows.append({"input": f"{a.midi_files:,} MIDI files ({size / 1e6:.1f} MB)", "how": f"workers={w}",
                             "seconds": round(info["seconds"], 2), "files_per_s": round(a.midi_files / info["seconds"]),
                             "peak_rss_mb": round(rss), "tokens": info["tokens"], "skipped": info["skipped"],
                             "digest": info["digest"]})
            if len({r["digest"] for r in rows}) > 1:
                raise SystemExit(f"the worker counts gave different token streams: {rows}")
        if a.text_mb > 0:
            path = root / "big.txt"
            size = build_text(path, Path(a.text) if a.text else None, a.text_mb)
            label = f"text file ({size / 1e6:,.0f} MB)"
            seconds, rss, out = run_child([py, "-c", PREPARE, str(path), "all"], fresh_env(root, "text"))
            info = json.loads(out)
            rows.append({"input": label, "how": "load_corpus", "seconds": round(info["seconds"], 2),
                         "mb_per_s": round(size / 1e6 / info["seconds"]), "peak_rss_mb": round(rss),
                         "tokens": info["tokens"]})
            seconds, rss, _ = run_child([py, "-m", "seqgen", "train", str(path), "--steps", "1", "--size", "tiny",
                                         "--quiet", "--out", str(root / "run")], fresh_env(root, "train"))
            rows.append({"input": label, "how": "seqgen train --steps 1", "seconds": round(seconds, 2),
                         "peak_rss_mb": round(rss)})
    if a.json:
        for r in rows:
            print(json.dumps(r))
        return
    print(f"{'input':<32} {'how':<24} {'seconds':>8} {'rate':>12} {'peak RSS':>10}")
    for r in rows:
        rate = f"{r['files_per_s']:,} files/s" if "files_per_s" in r else (
            f"{r['mb_per_s']:,} MB/s" if "mb_per_s" in r else "")
        print(f"{r['input']:<32} {r['how']:<24} {r['seconds']:>8.2f} {rate:>12} {r['peak_rss_mb']:>6,} MiB")


if __name__ == "__main__":
    main()

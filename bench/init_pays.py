"""Does --init pay? A base run on one part of a corpus, a short fine-tune from it on the other
part, against a run from scratch on that part with the whole budget of both.

    python bench/init_pays.py --corpus ../shared/corpora/tinyshakespeare.txt       # 3m base, 1m fine-tune, 4m scratch
    python bench/init_pays.py --corpus prose.txt --small small.txt --base 3m --fine 1m --scratch 4m

Without --small the corpus is cut: the first --base-bytes (900,000) are the base corpus, the rest
the small one. Prints each run's whole-validation loss on the small corpus (`seqgen eval`,
nats per character, state carried) with the commands it ran. Four minutes of training on top
of the base's: run it with nothing else busy, and say when the machine was shared.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path


def seqgen(*args: str) -> str:
    cmd = [sys.executable, "-m", "seqgen", *args]
    print("$ seqgen " + shlex.join(args), flush=True)
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--small", help="the small corpus (default: the corpus after --base-bytes)")
    ap.add_argument("--base-bytes", type=int, default=900_000)
    ap.add_argument("--base", default="3m")
    ap.add_argument("--fine", default="1m")
    ap.add_argument("--scratch", default="4m")
    ap.add_argument("--out", default="/tmp/seqgen-init-bench")
    ap.add_argument("--seed", default="0")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    text = Path(a.corpus).read_text(encoding="utf-8")
    base_txt, small_txt = out / "base.txt", out / "small.txt"
    if a.small:
        base_txt.write_text(text, encoding="utf-8")
        small_txt.write_text(Path(a.small).read_text(encoding="utf-8"), encoding="utf-8")
    else:
        cut = len(text.encode("utf-8")[: a.base_bytes].decode("utf-8", "ignore"))
        base_txt.write_text(text[:cut], encoding="utf-8")
        small_txt.write_text(text[cut:], encoding="utf-8")
    common = ["--seed", a.seed, "--quiet"]
    runs = {"base": out / "base", "fine": out / "fine", "scratch": out / "scratch"}
    for r in runs.values():
        if r.exists():
            raise SystemExit(f"{r} exists; remove {out} or give another --out")
    seqgen("train", str(base_txt), "--time", a.base, "--out", str(runs["base"]), *common)
    seqgen("train", str(small_txt), "--init", str(runs["base"]), "--time", a.fine, "--out", str(runs["fine"]), *common)
    seqgen("train", str(small_txt), "--time", a.scratch, "--out", str(runs["scratch"]), *common)
    print(f"\nsmall corpus: {small_txt.stat().st_size:,} bytes; base corpus: {base_txt.stat().st_size:,} bytes")
    print(f"{'run':<40} {'val_loss (nats/char)':>20}")
    for name, label in (("base", f"base, {a.base} (evaluated on the small corpus)"),
                        ("fine", f"--init base, {a.fine} on the small corpus"),
                        ("scratch", f"from scratch, {a.scratch} on the small corpus")):
        extra = ["--corpus", str(small_txt)] if name == "base" else []
        result = json.loads(seqgen("eval", str(runs[name]), "--json", *extra))
        print(f"{label:<40} {result['val_loss']:>20.4f}", flush=True)


if __name__ == "__main__":
    main()

"""Time to first token of `seqgen sample BUNDLE --interactive`: from a prompt line written to
its stdin to the first byte of the answer on its stdout, the model loaded once.

    python bench/interactive_latency.py exports/shake                # prompts of 1, 30 and 300 characters
    python bench/interactive_latency.py exports/shake --repeats 50 --lengths 30

Starts the real command (onnxruntime for a bundle, torch for a run folder) with pipes, waits
for it to load, then sends each prompt and reads the answer to its end. Prints the load time
and, per prompt length, the median and the 90th percentile of the time to first token and the
time to the whole answer (--length tokens, or up to the first newline it writes).
The prompts are taken from the run's vocabulary.
Timings depend on what else the machine runs: say so beside any figure.
"""

from __future__ import annotations

import argparse
import os
import select
import statistics
import subprocess
import sys
import time

TEXT = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer "


def read_line(fd: int, timeout: float = 60.0) -> tuple[float, float]:
    """Seconds until the first byte and until the answer's newline."""
    start = time.perf_counter()
    first = None
    buf = b""
    while not buf.endswith(b"\n"):
        if not select.select([fd], [], [], timeout)[0]:
            raise SystemExit("no answer within the timeout")
        chunk = os.read(fd, 65536)
        if not chunk:
            raise SystemExit("the command ended early")
        if first is None:
            first = time.perf_counter() - start
        buf += chunk
    return first, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="ONNX bundle (or run folder) to sample from")
    ap.add_argument("--lengths", default="1,30,300", help="prompt lengths in characters")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--length", type=int, default=20, help="tokens per answer")
    a = ap.parse_args()
    # the answer must not hold a newline (read_line waits for one): stop at the first one it writes
    cmd = [sys.executable, "-m", "seqgen", "sample", a.run, "--interactive", "--length", str(a.length),
           "--seed", "0", "--stop", "\n"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    fd = proc.stdout.fileno()
    proc.stdin.write(b"A\n")  # the first answer marks the end of loading
    proc.stdin.flush()
    read_line(fd, 120)
    load = time.perf_counter() - t0
    print(f"{a.run}: loaded and answered the first prompt in {load * 1000:.0f} ms")
    print(f"{'prompt chars':>12} {'first token median':>19} {'p90':>8} {'whole answer median':>20}")
    for n in (int(x) for x in a.lengths.split(",")):
        prompt = (TEXT * (n // len(TEXT) + 1))[:n].replace("\n", " ")
        firsts, wholes = [], []
        for _ in range(a.repeats):
            proc.stdin.write(prompt.encode() + b"\n")
            proc.stdin.flush()
            f, w = read_line(fd)
            firsts.append(f)
            wholes.append(w)
        firsts.sort()
        p90 = firsts[min(len(firsts) - 1, int(0.9 * len(firsts)))]
        print(f"{n:>12} {statistics.median(firsts) * 1000:>16.1f} ms {p90 * 1000:>5.1f} ms "
              f"{statistics.median(wholes) * 1000:>17.1f} ms")
    proc.stdin.close()
    proc.wait(timeout=30)


if __name__ == "__main__":
    main()

"""Load on ``seqgen serve``: 1, 4, 16 and 64 concurrent streaming clients for a bounded time each,
then the same with a third of the requests malformed, then memory over 1,000 requests.

    python bench/serve_load.py [BUNDLE] [--model lstm|transformer] [--seconds 10] [--levels 1,4,16,64]
                               [--requests 1000]

Without BUNDLE it exports the default model of ``--model`` (the LSTM unless told: ``small``,
printable ASCII, random weights) to a temporary folder. The server runs in its own process on a
free loopback port; the clients are
one asyncio process speaking HTTP/1.1 over raw sockets (cheaper than an HTTP library, so the
client takes less of the machine from the server). Each client sends a streaming completion of
``--tokens`` tokens, reads it to the end, and sends the next. Printed: aggregate tokens/s, time to
first token and time per output token (a request's mean gap between its streamed tokens after the
first), median and p99 over requests, errors,
and the server's resident memory after warm-up and at the end of the 1,000 requests. Before the
load, the bundle's engine alone (no server, no HTTP) at each level: the ratios the server would
reach if serving cost nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
BAD = [b'{"prompt": "All", ', b'{"prompt": "All", "max_tokens": "many"}', b'{"prompt": "All", "temperature": -2}',
       '{"prompt": "All \u20ac"}'.encode(), b'{"prompt": "All", "max_tokens": 99999999}', b'[1, 2, 3]']


def export_default(tmp: Path, model: str = "lstm") -> Path:
    code = (
        "import sys, torch\nfrom pathlib import Path\nfrom seqgen import checkpoint as c\n"
        "from seqgen.config import TrainConfig\nfrom seqgen.export import export_run\n"
        "from seqgen.models import build_model, make_config\nfrom seqgen.tokenizers import CharTokenizer\n"
        "root = Path(sys.argv[1]); tok = CharTokenizer.from_chars(''.join(chr(i) for i in range(32, 127)) + '\\n')\n"
        "torch.manual_seed(0)\nm = build_model(make_config(sys.argv[2], tok.vocab_size, 'small', mid_id=tok.mid_id))\n"
        "cfg = TrainConfig(model=sys.argv[2])\n"
        "c.save(c.Checkpoint(model=m, tokenizer=tok, train=cfg), root / 'run' / c.BEST)\n"
        "export_run(root / 'run', root / 'bundle', loss_tokens=0)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp), model], check=True,
                   env={**os.environ, "PYTHONPATH": str(HERE)})
    return tmp / "bundle"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def request(port: int, body: bytes, stats: dict, stream: bool) -> int:
    """One request; records status, time to first token, gaps between tokens and the tokens."""
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        await writer.drain()
        status = int((await reader.readline()).split()[1])
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        stats["status"].append(status)
        if status != 200:
            await reader.read()
            return status
        first = last = None
        tokens, buf = 0, b""
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                break
            buf += chunk
            while b"\n\n" in buf:
                event, buf = buf.split(b"\n\n", 1)
                i = event.find(b"data: {")
                if i < 0:
                    continue
                now = time.perf_counter()
                text = json.loads(event[i + 6:])["choices"]
                if not text or not text[0]["text"]:
                    continue
                tokens += len(text[0]["text"])
                if first is None:
                    first = now
                    stats["ttft"].append(now - t0)
                last = now
        stats["tokens"] += tokens
        if tokens > 1:  # time per output token after the first, this request's mean
            stats["gap"].append((last - first) / (tokens - 1))
        if stream and tokens != stats["want"]:
            stats["short"] += 1
        return status
    finally:
        writer.close()


async def clients(port: int, n: int, seconds: float, tokens: int, bad_every: int = 0, total: int | None = None):
    stats = {"status": [], "ttft": [], "gap": [], "tokens": 0, "short": 0, "want": tokens, "bad_sent": 0,
             "bad_4xx": 0}
    good = json.dumps({"prompt": "All", "max_tokens": tokens, "stream": True, "temperature": 1.0}).encode()
    end = time.perf_counter() + seconds
    sent = 0

    async def client(k: int) -> None:
        nonlocal sent
        while time.perf_counter() < end and (total is None or sent < total):
            sent += 1
            if bad_every and sent % bad_every == 0:
                stats["bad_sent"] += 1
                if 400 <= await request(port, BAD[sent % len(BAD)], stats, stream=False) < 500:
                    stats["bad_4xx"] += 1
            else:
                await request(port, good, stats, stream=True)

    t0 = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(n)))
    stats["seconds"] = time.perf_counter() - t0
    return stats


def engine_alone(bundle: Path, levels: list[int], seconds: float = 1.0) -> str:
    """The bundle's own engine with no server: tokens/s of one call per ``DRAW_STEPS`` steps of
    ``n`` rows drawing with the temperature (what the server's worker runs), for each level, in
    this process, before the server starts. The ceiling of the server's ratios."""
    import numpy as np

    sys.path.insert(0, str(HERE))  # this tree's seqgen, as the server's PYTHONPATH
    from seqgen.engines.onnx_engine import open_bundle
    from seqgen.serve.batcher import DRAW_STEPS

    if not (bundle / "seqgen.json").is_file():
        return "engine alone: timed for bundles only"
    gen = open_bundle(bundle, threads=1)
    engine, vocab = gen.engine, gen.tokenizer.vocab_size
    if not getattr(engine, "can_draw", False):
        return "engine alone: this bundle has no sampling loop"
    out, base = [], None
    for n in levels:
        state = engine.start(n)
        logits, state = engine.advance(np.zeros((n, 1), dtype=np.int64), state)
        u, t, bias = np.random.default_rng(0).random((DRAW_STEPS, n)), np.ones((n, 1)), np.zeros((n, vocab))
        calls, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds or calls < 3:
            _, _, logits, state = engine.draw(logits, state, u, t, bias)
            calls += 1
            if calls % 8 == 0:  # a fresh state now and then, so a sliding cache stays the size rows see
                state = engine.start(n)
                logits, state = engine.advance(np.zeros((n, 1), dtype=np.int64), state)
        rate = calls * DRAW_STEPS * n / (time.perf_counter() - t0)
        base = base or rate
        out.append(f"{n}: {rate:,.0f} (x{rate / base:.1f})")
    return "engine alone, tokens/s by rows: " + ", ".join(out)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000


def row(label: str, n: int, st: dict) -> str:
    errors = sum(1 for s in st["status"] if s >= 500) + st["short"]
    return (
        f"{label:7} {n:3} {st['tokens'] / st['seconds']:10,.0f} "
        f"{pct(st['ttft'], 0.5):8.1f} {pct(st['ttft'], 0.99):8.1f}"
        f" {pct(st['gap'], 0.5):7.2f} {pct(st['gap'], 0.99):7.2f} {len(st['status']):6} {errors:4}"
        + (f"  bad {st['bad_sent']}, of which 4xx {st['bad_4xx']}" if st["bad_sent"] else "")
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", nargs="?", type=Path)
    ap.add_argument("--model", choices=["lstm", "transformer"], default="lstm", help="the default model to export")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--levels", default="1,4,16,64")
    ap.add_argument("--tokens", type=int, default=128, help="tokens per request")
    ap.add_argument("--requests", type=int, default=1000, help="requests of the memory check (a third malformed)")
    a = ap.parse_args()
    levels = [int(x) for x in a.levels.split(",")]
    with tempfile.TemporaryDirectory(prefix="seqgen-load-") as tmp:
        bundle = a.bundle or export_default(Path(tmp), a.model)
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(HERE), "OMP_NUM_THREADS": "1"}
        server = subprocess.Popen([sys.executable, "-c", "from seqgen.cli import main; import sys; "
                                   "sys.argv = ['seqgen'] + sys.argv[1:]; main()", "serve", str(bundle), "--port",
                                   str(port), "--max-rows", "64", "--max-queue", "256"],
                                  env=env, stderr=subprocess.DEVNULL)
        try:
            for _ in range(300):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            asyncio.run(clients(port, 2, 2.0, a.tokens))  # warm-up
            print(f"seqgen serve {bundle.name}: {a.tokens} tokens per request, {a.seconds:g}s per level, "
                  f"{os.cpu_count()} CPU(s) shared by server and clients")
            print(engine_alone(bundle, levels))  # the server idles meanwhile
            print(f"{'load':7} {'n':>3} {'tok/s':>10} {'ttft50':>8} {'ttft99':>8} {'tok50':>7} {'tok99':>7} "
                  f"{'reqs':>6} {'5xx':>4}   (times in ms)")
            base = None
            for n in levels:
                st = asyncio.run(clients(port, n, a.seconds, a.tokens))
                base = base or st["tokens"] / st["seconds"]
                print(row("stream", n, st) + f"  x{st['tokens'] / st['seconds'] / base:.1f} of one")
            for n in levels:
                print(row("+bad", n, asyncio.run(clients(port, n, a.seconds, a.tokens, bad_every=3))))
            asyncio.run(clients(port, 16, 3600, 32, bad_every=3, total=100))
            before = rss_mb(server.pid)
            st = asyncio.run(clients(port, 16, 3600, 32, bad_every=3, total=a.requests))
            after = rss_mb(server.pid)
            fives = sum(1 for s in st["status"] if s >= 500)
            print(f"memory: {a.requests} requests (a third malformed, 16 at a time): RSS {before:.1f} MB after "
                  f"warm-up, {after:.1f} MB at the end ({(after - before) / before:+.1%}); 5xx {fives}, "
                  f"bad {st['bad_sent']} of which 4xx {st['bad_4xx']}, good answered short {st['short']}")
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()

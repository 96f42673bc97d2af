"""Generation speed per engine: tokens per second at batch 1 and 8, measured in one run.

Engines: ``torch-naive`` reruns the whole context (up to the model's window) for every token,
with no state; ``torch`` carries its state (hidden state or KV cache, ``TorchEngine``); ``onnx``
and ``onnx-int8`` run exported bundles with onnxruntime. Every engine starts from the same
prompt of one full window and samples with the same rule (``seqgen.sampling.generate``); the
clock starts after the first token, so prefill is excluded and every step sees a full window.
Also measured: the time a fresh Python process takes to open the bundle and produce one token.
Every engine gets the same number of threads (default 1: on 2 shared cores, torch with 2 threads
measured 5x slower than with 1 for these small steps).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from seqgen.errors import ConfigError
from seqgen.runs import locate
from seqgen.sampling import generate

ENGINES = ("torch-naive", "torch", "onnx", "onnx-int8")


@dataclass
class BenchRow:
    engine: str
    batch: int
    tokens_per_s: float
    tokens: int  # tokens generated per row in the timed part
    seconds: float
    first_token_s: float | None = None  # fresh process: open the bundle, produce one token

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


class NaiveTorchEngine:
    """The naive way: no state; every call reruns the last ``window`` tokens of the context."""

    def __init__(self, model, window: int):
        self.model, self.window = model.eval(), window

    def start(self, batch: int):
        return np.zeros((batch, 0), dtype=np.int64)

    def advance(self, ids: np.ndarray, context: np.ndarray):
        import torch

        context = np.concatenate((context, np.asarray(ids, dtype=np.int64)), axis=1)[:, -self.window:]
        with torch.inference_mode():
            logits, _ = self.model(torch.from_numpy(context), None)
        return logits[:, -1].float().numpy(), context


def time_engine(engine, prompt: np.ndarray, tokens: int, seed: int = 0) -> float:
    """Seconds to generate ``tokens`` tokens per row after the first (prefill excluded)."""
    steps = generate(engine, prompt, tokens + 1, temperature=1.0, rng=np.random.default_rng(seed))
    next(steps)
    start = time.perf_counter()
    n = sum(1 for _ in steps)
    if n != tokens:
        raise RuntimeError(f"expected {tokens} timed steps, got {n}")
    return time.perf_counter() - start


def first_token_seconds(bundle: Path) -> float:
    """Wall time of a fresh ``python -c`` that opens the bundle and samples one token."""
    code = (
        "import numpy as np\n"
        "from seqgen.engines.onnx_engine import open_bundle\n"
        "from seqgen.sampling import complete\n"
        f"g = open_bundle({str(bundle)!r})\n"
        "tok = g.tokenizer\n"
        "p = tok.encode(tok.default_prompt()) if hasattr(tok, 'default_prompt') else np.zeros(1, np.int64)\n"
        "print(next(iter(complete(g, p, 1, rng=np.random.default_rng(0))))[0])\n"
    )
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return time.perf_counter() - start


def bench(
    path: Path,
    tokens: int = 500,
    batches: tuple[int, ...] = (1, 8),
    engines: tuple[str, ...] = ENGINES,
    naive_tokens: int | None = None,
    threads: int = 1,
    log: Callable[[str], None] = lambda _: None,
) -> list[BenchRow]:
    """Time every engine in ``engines`` on a run folder, checkpoint or bundle; one row per (engine, batch)."""
    unknown = [e for e in engines if e not in ENGINES]
    if unknown:
        raise ConfigError(f"unknown engine {unknown[0]!r}; expected one of {', '.join(ENGINES)}")
    if tokens < 1 or any(b < 1 for b in batches):
        raise ConfigError(f"tokens and batch sizes must be at least 1, got {tokens} and {list(batches)}")
    with tempfile.TemporaryDirectory(prefix="seqgen-bench-") as tmp:
        built, bundles = _engines(Path(path), engines, Path(tmp), threads, log)
        vocab, window = built.pop("_vocab"), built.pop("_window")
        rng = np.random.default_rng(0)
        rows = []
        for batch in batches:
            prompt = rng.integers(0, max(1, vocab - 4), (batch, window), dtype=np.int64)
            for name in engines:
                if name not in built:
                    continue
                n = (naive_tokens or max(10, tokens // 10)) if name == "torch-naive" else tokens
                seconds = time_engine(built[name], prompt, n)
                rows.append(BenchRow(name, batch, n * batch / seconds, n, seconds))
                log(f"{name:>12}  batch {batch}  {rows[-1].tokens_per_s:10,.0f} tokens/s")
        for row in rows:
            if row.batch == min(batches) and row.engine in bundles:
                row.first_token_s = first_token_seconds(bundles[row.engine])
                log(f"{row.engine:>12}  fresh process to first token {row.first_token_s:.2f}s")
    return rows


def _engines(path: Path, engines, tmp: Path, threads: int, log) -> tuple[dict, dict]:
    """{engine name: engine} plus the bundle folder of each onnx engine."""
    from seqgen.engines.onnx_engine import open_bundle

    built, bundles = {}, {}
    found = locate(path)
    if found.kind == "bundle":
        path = found.path
        gen = open_bundle(path, threads=threads)
        name = "onnx-int8" if gen.info.get("quantize") == "int8" else "onnx"
        skipped = [e for e in engines if e != name]
        if skipped:
            log(f"{path} is a bundle: measuring {name} only (give a run folder for {', '.join(skipped)})")
        if name in engines:
            built[name], bundles[name] = gen.engine, path
        built["_vocab"], built["_window"] = gen.tokenizer.vocab_size, _window(gen.info["bundle"])
        return built, bundles

    import torch

    from seqgen.checkpoint import open_checkpoint
    from seqgen.device import set_threads
    from seqgen.engines.torch_engine import TorchEngine
    from seqgen.export import export_checkpoint

    set_threads(threads)
    ckpt = open_checkpoint(found.path)
    model = ckpt.model.eval()
    meta = {"model_config": model.config.to_dict(), "train_window": ckpt.train.window}
    built["_vocab"], built["_window"] = ckpt.tokenizer.vocab_size, _window(meta)
    log(f"torch {torch.__version__}, {threads} thread(s) for torch and onnxruntime; window {built['_window']} tokens")
    if "torch-naive" in engines:
        built["torch-naive"] = NaiveTorchEngine(model, built["_window"])
    if "torch" in engines:
        built["torch"] = TorchEngine(model)
    for name, quantize in (("onnx", None), ("onnx-int8", "int8")):
        if name in engines:
            out = tmp / name
            export_checkpoint(ckpt, out, quantize=quantize, loss_tokens=0)
            built[name], bundles[name] = open_bundle(out, threads=threads).engine, out
    return built, bundles


def _window(meta: dict) -> int:
    """The context the naive engine recomputes: the transformer's window, else the training window."""
    return int(meta["model_config"].get("window") or meta.get("train_window") or 128)


def ratios(rows: list[BenchRow]) -> dict[tuple[str, int], dict[str, float]]:
    """Per (engine, batch): its speed relative to ``torch`` and ``torch-naive`` at the same batch."""
    by = {(r.engine, r.batch): r.tokens_per_s for r in rows}
    out = {}
    for r in rows:
        out[(r.engine, r.batch)] = {ref: r.tokens_per_s / by[(ref, r.batch)]
                                    for ref in ("torch", "torch-naive") if (ref, r.batch) in by}
    return out

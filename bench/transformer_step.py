"""Where a batch-1 step of the default transformer bundle goes, measured side by side in one run.

    python bench/transformer_step.py [--rounds 5] [--past 200]

Builds the default small transformer (random weights, a 69-character vocabulary, as
``bench/engine_compare.py``) and exports it with the default (fused) and the ``gqa`` exporter,
then times, one thread, alternating round after round and keeping each one's fastest:

- ``advance`` of one token after a past of ``--past`` tokens: the fused bundle, the gqa bundle,
  and the fused graph with its MatMuls turned into 8-bit block-quantized ``MatMulNBits``
  (int8 arithmetic, ``accuracy_level`` 4; what onnxruntime's weight-only quantizer writes);
- the 17 MatMuls of the model's shapes alone, chained in one graph, once with distinct weights
  (3.1 MB, more than one core's L2) and once with every layer sharing one layer's weights;
- ``seqgen bench``'s loop (the sampling loop, a full window of prompt) with 1 and 2 intra-op threads.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))


def export_bundles(root: Path) -> dict[str, Path]:
    import torch

    from seqgen import checkpoint as ckpt_io
    from seqgen.config import TrainConfig
    from seqgen.export import export_run
    from seqgen.models import build_model, make_config
    from seqgen.tokenizers import CharTokenizer

    tok = CharTokenizer.from_chars("".join(chr(c) for c in range(32, 96)) + "\n")
    torch.manual_seed(0)
    model = build_model(make_config("transformer", tok.vocab_size, "small", mid_id=tok.mid_id))
    run = root / "run"
    ckpt_io.save(ckpt_io.Checkpoint(model=model, tokenizer=tok, train=TrainConfig(model="transformer", window=256)),
                 run / ckpt_io.BEST)
    out = {}
    for name in ("fused", "gqa"):
        export_run(run, root / name, loss_tokens=0, exporter=name, force=True)
        out[name] = root / name
    out["fused 8-bit"] = quantized(root / "fused", root / "q8")
    return out


def quantized(src: Path, dst: Path) -> Path:
    """The bundle with its step graph's MatMuls as 8-bit MatMulNBits (the sampling loop left out)."""
    import json
    import logging
    import shutil

    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import (DefaultWeightOnlyQuantConfig,
                                                                 MatMulNBitsQuantizer)

    logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)
    shutil.copytree(src, dst)
    q = MatMulNBitsQuantizer(onnx.load(str(src / "model.onnx")), algo_config=DefaultWeightOnlyQuantConfig(
        block_size=32, is_symmetric=True, accuracy_level=4, bits=8))
    q.process()
    onnx.save(q.model.model, str(dst / "model.onnx"))
    meta = json.loads((dst / "seqgen.json").read_text())
    meta.pop("loop_file", None)
    (dst / "sample_loop.onnx").unlink(missing_ok=True)
    (dst / "seqgen.json").write_text(json.dumps(meta))
    return dst


def matmul_chain(shared: bool) -> bytes:
    """The model's 17 MatMul shapes (4 layers of qkv, proj, fc, fc2, then the head) in one graph."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "x"
    shapes = [(128, 384), (128, 128), (128, 512), (512, 128)] * 4 + [(128, 69)]
    for k, (a, b) in enumerate(shapes):
        name = f"w{a}x{b}" if shared else f"w{k}"
        if not any(i.name == name for i in inits):
            inits.append(numpy_helper.from_array((rng.standard_normal((a, b)) * 0.05).astype(np.float32), name))
        nodes.append(helper.make_node("MatMul", [x, name], [f"y{k}"]))
        x = f"y{k}"
        if b == 384:  # keep the first 128 columns, the next layer's input width
            nodes.append(helper.make_node("Slice", [x, "s0", "s1", "ax"], [f"z{k}"]))
            x = f"z{k}"
    inits += [numpy_helper.from_array(np.array([v]), n) for n, v in (("s0", 0), ("s1", 128), ("ax", 2))]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 128])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model.SerializeToString()


def timed(fn, n: int) -> float:
    """Microseconds per call of ``fn`` over ``n`` calls."""
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--past", type=int, default=200)
    a = ap.parse_args()
    import onnxruntime as ort

    from seqgen.engines.onnx_engine import open_bundle, session_options
    from seqgen.sampling import generate

    with tempfile.TemporaryDirectory(prefix="seqgen-step-") as tmp:
        bundles = export_bundles(Path(tmp))
        engines = {name: open_bundle(path, threads=1).engine for name, path in bundles.items()}
        chains = {name: ort.InferenceSession(matmul_chain(shared), session_options(1),
                                             providers=["CPUExecutionProvider"])
                  for name, shared in (("17 MatMuls, distinct weights", False), ("17 MatMuls, shared weights", True))}
        loops = {f"sampling loop, {t} thread(s)": open_bundle(bundles["fused"], threads=t) for t in (1, 2)}
        prompt = np.random.default_rng(0).integers(0, 60, (1, a.past), dtype=np.int64)
        window = np.random.default_rng(0).integers(0, 60, (1, 256), dtype=np.int64)
        one, x = np.array([[5]]), np.random.default_rng(0).standard_normal((1, 1, 128)).astype(np.float32)
        best: dict[str, float] = {}
        for _ in range(a.rounds):
            for name, e in engines.items():
                box = [e.start(1)]
                _, box[0] = e.advance(prompt, box[0])

                def step(e=e, box=box):
                    _, box[0] = e.advance(one, box[0])

                for _ in range(10):
                    step()
                best[f"advance, {name}"] = min(best.get(f"advance, {name}", 1e9), timed(step, 100))
            for name, s in chains.items():
                s.run(None, {"x": x})
                best[name] = min(best.get(name, 1e9), timed(lambda s=s: s.run(None, {"x": x}), 300))
            for name, g in loops.items():
                steps = generate(g.engine, window, 401, temperature=1.0, rng=np.random.default_rng(0))
                next(steps)
                start = time.perf_counter()
                n = sum(1 for _ in steps)
                rate = n / (time.perf_counter() - start)
                best[name] = min(best.get(name, 1e9), 1e6 / rate)
    print(f"default small transformer, batch 1, fastest of {a.rounds} rounds (one thread unless said)")
    for name, us in best.items():
        extra = f"  ({1e6 / us:,.0f} tokens/s)" if name.startswith("sampling") else ""
        print(f"{name:40s} {us:8.1f} us{extra}")


if __name__ == "__main__":
    main()

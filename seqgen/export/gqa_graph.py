"""The transformer's step around onnxruntime's ``GroupQueryAttention``, with a KV cache of fixed
capacity that the engine binds once and the graph writes in place.

Per layer: LayerNorm, one QKV MatMul (packed Q|K|V, the model's own order), one
``GroupQueryAttention`` node (rotary embedding inside, interleaved pairs; the sliding window as
``local_window_size = window``, which onnxruntime's CPU kernel reads as the model's ``window``
keys: the parity check measured it, ``window - 1`` hides one key too many; past and present
sharing one buffer), the output projection,
``SkipLayerNormalization``, the MLP with ``BiasGelu``. No prelude: the positions, the mask and
the angles come from ``seqlens_k`` and ``total_sequence_length``, which the engine feeds.

The cache holds ``capacity`` positions (``window - 1`` plus slack). When a call would run past
it, the engine keeps the last ``window - 1`` keys and values at the front of the buffer and
rotates the kept keys back by the positions it dropped (rotary embedding is relative, so the
attention scores are unchanged); the angle table therefore needs only ``capacity`` rows.
The export's parity check against torch covers prefill, cached steps and a text past the window.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seqgen.export.transformer_graph import GraphBuilder, save_graph
from seqgen.models import SeqModel

KV_BUFFER = "kv-buffer"  # the bundle's "engine" value for this state layout


def gqa_transformer_graph(model: SeqModel, path: Path) -> tuple[int, list[dict], dict]:
    """Write the graph; returns (opset, state layout, the engine's description of the buffer)."""
    from onnx import TensorProto, helper

    g = GraphBuilder(model, "GroupQueryAttention graph")
    c, w, inits, nodes, const, node, skip_norm = g.config, g.w, g.inits, g.nodes, g.const, g.node, g.skip_norm
    matmul = g.matmul
    hd = c.dim // c.heads
    keep = c.window - 1
    capacity = keep + max(16, c.window // 4)

    inv = c.rope_base ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)
    angles = np.arange(capacity, dtype=np.float64)[:, None] * inv[None, :]  # (capacity, hd/2)
    const("cos_cache", np.cos(angles).astype(np.float32))
    const("sin_cache", np.sin(angles).astype(np.float32))
    x = node("Gather", [const("embed", w["embed.weight"]), "ids"], "x0")  # (B, T, C)
    ln1 = model.blocks[0].ln1
    h = node("LayerNormalization", [x, const("blocks.0.ln1.w", w["blocks.0.ln1.weight"]),
                                    const("blocks.0.ln1.b", w["blocks.0.ln1.bias"])], "blocks.0.h1",
             epsilon=ln1.eps, axis=-1)
    norms = [*(b.ln1 for b in model.blocks[1:]), model.ln_f]
    norm_names = [*(f"blocks.{i}.ln1" for i in range(1, c.layers)), "ln_f"]
    for i, block in enumerate(model.blocks):
        p = f"blocks.{i}"
        qkv = node("Add", [matmul(h, f"{p}.qkv", f"{p}.qkv_mm"), const(f"{p}.qkv.b", w[f"{p}.qkv.bias"])],
                   f"{p}.qkv_out")  # (B, T, 3C): Q | K | V
        node("GroupQueryAttention", [qkv, "", "", f"past_k{i}", f"past_v{i}", "seqlens_k", "total_sequence_length",
                                     "cos_cache", "sin_cache"], [f"{p}.y", f"present_k{i}", f"present_v{i}"],
             domain="com.microsoft", num_heads=c.heads, kv_num_heads=c.heads, do_rotary=1, rotary_interleaved=1,
             local_window_size=c.window)
        a = matmul(f"{p}.y", f"{p}.proj", f"{p}.attn_out")
        h, x = skip_norm(x, a, block.ln2, f"{p}.ln2", f"{p}.proj.bias", f"{p}.h2", f"{p}.x1")
        f = node("BiasGelu", [matmul(h, f"{p}.mlp.0", f"{p}.fc"), const(f"{p}.mlp.0.b", w[f"{p}.mlp.0.bias"])],
                 f"{p}.act", domain="com.microsoft")
        m = matmul(f, f"{p}.mlp.2", f"{p}.mlp_out")
        h, x = skip_norm(x, m, norms[i], norm_names[i], f"{p}.mlp.2.bias", f"{p}.h_next", f"{p}.x2",
                         last=i == c.layers - 1)
    node("MatMul", [h, const("head.wt", w["head.weight"].T.copy())], "logits")

    f32, i64, i32 = TensorProto.FLOAT, TensorProto.INT64, TensorProto.INT32
    kv_shape = ["batch", c.heads, "capacity", hd]
    layout = [{"name": f"{kind}{i}", "input": f"past_{kind}{i}", "output": f"present_{kind}{i}",
               "shape": ["batch", c.heads, capacity, hd], "dtype": "float32", "init": 0.0}
              for kind in ("k", "v") for i in range(c.layers)]
    buffer = {"capacity": capacity, "keep": keep, "axis": 2, "rotary": {"base": c.rope_base, "dim": hd,
                                                                         "interleaved": True}}
    graph = helper.make_graph(
        nodes, "seqgen_transformer_gqa_step",
        [helper.make_tensor_value_info("ids", i64, ["batch", "seq"])]
        + [helper.make_tensor_value_info(s["input"], f32, kv_shape) for s in layout]
        + [helper.make_tensor_value_info("seqlens_k", i32, ["batch"]),
           helper.make_tensor_value_info("total_sequence_length", i32, [])],
        [helper.make_tensor_value_info("logits", f32, ["batch", "seq", c.vocab_size])]
        + [helper.make_tensor_value_info(s["output"], f32, kv_shape) for s in layout],
        inits,
    )
    save_graph(graph, path, opset=17, ir_version=9)
    return 17, layout, buffer

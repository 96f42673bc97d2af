"""The transformer's step as a hand-built ONNX graph with onnxruntime's fused operators.

Used by ``seqgen.export`` (the ``fused`` exporter); the export's parity check proves that the
graph reproduces the model's forward.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import nn

from seqgen.errors import ExportError
from seqgen.models import SeqModel


class GraphBuilder:
    """The nodes and initializers of a hand-built transformer step graph, and the pieces both
    transformer graphs (this one and ``seqgen.export.gqa_graph``) are made of. ``what`` names the
    graph in the errors for a model it does not fit."""

    def __init__(self, model: SeqModel, what: str):
        from seqgen.models.transformer import TransformerLM

        if type(model) is not TransformerLM:
            raise ExportError(f"the {what} is for TransformerLM, not {type(model).__name__}")
        if not all(isinstance(b.mlp[1], nn.GELU) and b.mlp[1].approximate == "none" for b in model.blocks):
            raise ExportError(f"the {what} expects exact GELU in the MLP")
        self.config = model.config
        self.w = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
        self.inits: list = []
        self.nodes: list = []

    def const(self, name: str, value) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, ins: list[str], out: str | list[str], **attrs) -> str:
        from onnx import helper

        outs = [out] if isinstance(out, str) else out
        self.nodes.append(helper.make_node(op, ins, outs, name=f"n{len(self.nodes)}_{op}", **attrs))
        return out

    def matmul(self, x: str, prefix: str, out: str) -> str:
        """``x`` times the transposed weight of the linear layer ``prefix`` (its bias left to the caller)."""
        return self.node("MatMul", [x, self.const(f"{prefix}.wt", self.w[f"{prefix}.weight"].T.copy())], out)

    def skip_norm(self, x: str, skip: str, mod: nn.LayerNorm, prefix: str, bias: str, out: str, total: str,
                  last: bool = False) -> tuple[str, str]:
        """LayerNorm(x + skip + bias) as onnxruntime's ``SkipLayerNormalization``; also the sum
        (``total``), the next residual, except after the ``last`` layer."""
        w, const = self.w, self.const
        ins = [x, skip, const(f"{prefix}.w", w[f"{prefix}.weight"]), const(f"{prefix}.b", w[f"{prefix}.bias"]),
               const(bias, w[bias])]
        self.node("SkipLayerNormalization", ins, [out, "", "", "" if last else total], domain="com.microsoft",
                  epsilon=mod.eps)
        return out, total


def fused_transformer_graph(model: SeqModel, path: Path) -> tuple[int, list[dict]]:
    """Write the transformer step as a hand-built opset-23 graph with fused operators.

    Per layer: LayerNorm, one QKV MatMul, ``RotaryEmbedding`` (interleaved pairs, angles computed
    once per call from ``past_pos``), one ``Attention`` node that appends to the KV cache under the
    sliding-window mask, the MLP. The KV cache is one (B, heads, S, head_dim) tensor per layer
    (``past_k0``, ``past_v0``, ...: the bundle's state layout says so) rather than the model's
    stacked (layers, ...) tensors, which would cost a gather and a concat copy per step.
    About 40% of the generic export's operators, and a small step is dominated by per-operator
    overhead. Weights come from the model; the parity check proves the graph matches its forward.
    """
    from onnx import TensorProto, helper

    g = GraphBuilder(model, "fused graph")
    c, w, inits, nodes, const, node, skip_norm = g.config, g.w, g.inits, g.nodes, g.const, g.node, g.skip_norm
    hd = c.dim // c.heads

    def linear(x: str, prefix: str, out: str, bias: bool = True) -> str:
        y = g.matmul(x, prefix, out + ("_mm" if bias else ""))
        return node("Add", [y, const(f"{prefix}.b", w[f"{prefix}.bias"])], out) if bias else y

    def norm(x: str, mod: nn.LayerNorm, prefix: str, out: str) -> str:
        return node("LayerNormalization", [x, const(f"{prefix}.w", w[f"{prefix}.weight"]),
                                           const(f"{prefix}.b", w[f"{prefix}.bias"])], out, epsilon=mod.eps, axis=-1)

    i64 = lambda *v: np.array(v, dtype=np.int64)  # noqa: E731
    # Rows of one batch may have read different numbers of tokens: row b is at position
    # past_pos[b], and the first past_pad[b] entries of its cache hold nothing (rows stacked by
    # padding their caches at the front: ``OnnxEngine.stack``). Alone, a row has no padding.
    node("Shape", ["ids"], "t1", start=1, end=2)  # (1,)
    node("Shape", ["past_k0"], "s1", start=2, end=3)  # (1,)
    node("Squeeze", ["t1"], "t")
    node("Range", [const("zero", np.array(0, np.int64)), "t", const("one", np.array(1, np.int64))], "r")  # (T,)
    node("Unsqueeze", ["past_pos", const("ax1", i64(1))], "pos_col")  # (B, 1)
    node("Add", ["pos_col", "r"], "abs_pos")  # (B, T)
    node("Cast", ["abs_pos"], "abs_pos_f", to=TensorProto.FLOAT)
    node("Unsqueeze", ["abs_pos_f", const("ax2", i64(2))], "abs_pos_3")  # (B, T, 1)
    inv = (c.rope_base ** (-np.arange(0, hd, 2, dtype=np.float32) / hd)).astype(np.float32)[None, None, :]
    node("Mul", ["abs_pos_3", const("inv_freq", inv)], "ang")  # (B, T, hd/2): each row's own angles
    node("Cos", ["ang"], "cos")
    node("Sin", ["ang"], "sin")
    # mask (B, 1, T, S+T): key j visible to query i of row b when i+S-window < j <= i+S (sliding
    # causal window, by cache index) and j >= past_pad[b] (not padding)
    node("Squeeze", ["s1"], "s")
    node("Add", ["r", "s"], "q_pos")
    node("Unsqueeze", ["q_pos", const("ax1b", i64(1))], "q_col")  # (T, 1)
    node("Add", ["s", "t"], "total")
    node("Range", ["zero", "total", "one"], "k_pos")  # (S+T,)
    node("LessOrEqual", ["k_pos", "q_col"], "causal")
    node("Sub", ["q_col", const("window", np.array(c.window, np.int64))], "lo")
    node("Greater", ["k_pos", "lo"], "recent")
    node("And", ["causal", "recent"], "in_window")  # (T, S+T)
    node("Reshape", ["past_pad", const("pad_shape", i64(-1, 1, 1, 1))], "pad_4")  # (B, 1, 1, 1)
    node("GreaterOrEqual", ["k_pos", "pad_4"], "filled")  # (B, 1, 1, S+T)
    node("And", ["in_window", "filled"], "mask")  # (B, 1, T, S+T)
    x = node("Gather", [const("embed", w["embed.weight"]), "ids"], "x0")  # (B, T, C)
    h = norm(x, model.blocks[0].ln1, "blocks.0.ln1", "blocks.0.h1")
    norms = [*(b.ln1 for b in model.blocks[1:]), model.ln_f]
    norm_names = [*(f"blocks.{i}.ln1" for i in range(1, c.layers)), "ln_f"]
    for i, block in enumerate(model.blocks):
        p = f"blocks.{i}"
        qkv = linear(h, f"{p}.qkv", f"{p}.qkv_out")  # (B, T, 3C)
        node("Split", [qkv], [f"{p}.q", f"{p}.k", f"{p}.v"], axis=2, num_outputs=3)
        for name in ("q", "k"):
            node("RotaryEmbedding", [f"{p}.{name}", "cos", "sin"], f"{p}.{name}_rot",
                 interleaved=1, num_heads=c.heads)
        node("Attention", [f"{p}.q_rot", f"{p}.k_rot", f"{p}.v", "mask", f"past_k{i}", f"past_v{i}"],
             [f"{p}.y", f"present_k{i}", f"present_v{i}"], q_num_heads=c.heads, kv_num_heads=c.heads)
        # x1 = x + proj(y); h = ln2(x1), in one com.microsoft SkipLayerNormalization
        a = linear(f"{p}.y", f"{p}.proj", f"{p}.attn_out", bias=False)
        h, x = skip_norm(x, a, block.ln2, f"{p}.ln2", f"{p}.proj.bias", f"{p}.h2", f"{p}.x1")
        f = node("BiasGelu", [linear(h, f"{p}.mlp.0", f"{p}.fc", bias=False),
                              const(f"{p}.mlp.0.b", w[f"{p}.mlp.0.bias"])], f"{p}.act", domain="com.microsoft")
        m = linear(f, f"{p}.mlp.2", f"{p}.mlp_out", bias=False)
        # x2 = x1 + mlp; h = the next layer's ln1(x2) (or ln_f after the last layer)
        h, x = skip_norm(x, m, norms[i], norm_names[i], f"{p}.mlp.2.bias", f"{p}.h_next", f"{p}.x2",
                         last=i == c.layers - 1)
    node("Add", ["past_pos", "t"], "present_pos")
    node("Identity", ["past_pad"], "present_pad")
    node("MatMul", [h, const("head.wt", w["head.weight"].T.copy())], "logits")

    f32, i64t = TensorProto.FLOAT, TensorProto.INT64
    # The graph appends to the cache and never cuts it (a cut is a copy of the whole cache every
    # step); the mask hides keys older than the window, and the engine drops them in one copy
    # when ``trim`` more than ``keep`` have piled up ("keep" in the layout).
    keep = {"axis": 2, "keep": c.window - 1, "slack": max(16, c.window // 4)}
    layout = [{"name": f"{kind}{i}", "input": f"past_{kind}{i}", "output": f"present_{kind}{i}",
               "shape": ["batch", c.heads, "past", hd], "dtype": "float32", "init": 0.0, "trim": keep}
              for kind in ("k", "v") for i in range(c.layers)]
    layout.append({"name": "pos", "input": "past_pos", "output": "present_pos", "shape": ["batch"], "dtype": "int64",
                   "init": 0})
    layout.append({"name": "pad", "input": "past_pad", "output": "present_pad", "shape": ["batch"], "dtype": "int64",
                   "init": 0, "lead": {"axis": 2}})  # entries at the front of each row's cache that hold nothing
    dtypes = {"float32": f32, "int64": i64t}
    graph = helper.make_graph(
        nodes, "seqgen_transformer_step",
        [helper.make_tensor_value_info("ids", i64t, ["batch", "seq"])]
        + [helper.make_tensor_value_info(s["input"], dtypes[s["dtype"]], s["shape"]) for s in layout],
        [helper.make_tensor_value_info("logits", f32, ["batch", "seq", c.vocab_size])]
        + [helper.make_tensor_value_info(s["output"], dtypes[s["dtype"]],
                                         ["present" if d == "past" else d for d in s["shape"]]) for s in layout],
        inits,
    )
    save_graph(graph, path, opset=23, ir_version=10)
    return 23, layout


def save_graph(graph, path: Path, opset: int, ir_version: int) -> None:
    """A hand-built graph as a checked model file (onnx and onnxruntime's contrib domain)."""
    import onnx
    from onnx import helper

    proto = helper.make_model(graph, producer_name="seqgen", opset_imports=[
        helper.make_opsetid("", opset), helper.make_opsetid("com.microsoft", 1)])
    proto.ir_version = ir_version
    onnx.checker.check_model(proto)  # (contrib operators are not checked, onnxruntime checks them)
    onnx.save(proto, str(path))

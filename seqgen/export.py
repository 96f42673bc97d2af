"""ONNX export: a checkpoint becomes a bundle (``model.onnx`` + ``seqgen.json``) that samples
with onnxruntime and numpy alone (``seqgen.engines.onnx_engine``).

One graph serves prefill and single steps: ``ids`` (B, T) and the state go in, ``logits``
(B, T, V) and the new state come out, ``past_<name>`` in and ``present_<name>`` out. Batch,
sequence and past lengths are dynamic; a past length of 0 (the initial state) is allowed.
``seqgen.json`` records the state layout (names, shapes with symbolic dims, dtypes, initial
values), so the engine needs no knowledge of the model.

Exporters (torch 2.13):
- ``torchscript`` (``dynamo=False``, opset 17) for models holding an ``nn.RNN``/``GRU``/``LSTM``
  (rnn, gru, lstm, lstm-attn): the dynamo exporter "succeeds" for them but freezes the sequence
  length. The state is the model's own (``state_names``, ``init_state``).
- ``fused`` for the transformer: a hand-built opset-23 graph from the model's weights with
  ``Attention`` (KV cache in, present out, explicit sliding-window mask), ``RotaryEmbedding``
  and onnxruntime's ``SkipLayerNormalization``/``BiasGelu``; one KV tensor per layer.
- ``dynamo`` (``dynamic_shapes``, opset 23): the generic path, and the transformer's fallback
  when the fused graph fails its check. The state is the model's own (k, v, pos).

Every export checks itself before the bundle appears: the graph runs in onnxruntime at two
sequence lengths and with cached steps, and its logits are compared with torch. The bundle is
built in a temporary folder and renamed at the end, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from seqgen import __version__
from seqgen.engines import BUNDLE_FILE
from seqgen.engines.onnx_engine import FORMAT, MODEL_FILE
from seqgen.errors import SeqgenError
from seqgen.models import SeqModel

EXPORTS = Path("exports")
TOLERANCE = 1e-3  # largest allowed |logit difference| between torch and the fp32 graph
INT8_MAX_LOSS_INCREASE = 0.1  # nats per token; above it an int8 export fails
QUANTIZE = ("int8",)
SAMPLING_DEFAULTS = {"temperature": 1.0, "top_k": None, "top_p": None}
_RECURRENT = (nn.RNN, nn.GRU, nn.LSTM)


class ExportError(SeqgenError):
    """The exported graph does not reproduce the model (or cannot be built)."""


@dataclass
class ExportReport:
    path: Path
    model_type: str
    exporter: str
    opset: int
    max_abs_diff: float
    quantize: str | None = None
    int8_max_abs_diff: float | None = None
    val_loss_torch: float | None = None
    val_loss_onnx: float | None = None
    val_tokens: int = 0
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def val_loss_change(self) -> float | None:
        if self.val_loss_torch is None or self.val_loss_onnx is None:
            return None
        return self.val_loss_onnx - self.val_loss_torch


# ---- the graph --------------------------------------------------------------------------------
class _Step(nn.Module):
    """``forward(ids, state)`` -> (logits, *state): the model with its state flattened."""

    def __init__(self, model: SeqModel):
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor, state: tuple[torch.Tensor, ...]):
        logits, new = self.model(ids, tuple(state))
        return (logits, *new)


class _FlatStep(_Step):
    """The same with the state as separate arguments (the TorchScript exporter's calling form)."""

    def forward(self, ids: torch.Tensor, *state: torch.Tensor):  # type: ignore[override]
        return super().forward(ids, state)


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' and quantizer's warnings and log lines (the report says what matters)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)


def state_layout(model: SeqModel) -> list[dict]:
    """Names, shapes (with symbolic ``batch``/``past`` dims), dtypes and initial values of the state.

    The batch axis is the one that differs between ``init_state(1)`` and ``init_state(2)``;
    axes of length 0 in the initial state grow as tokens are read (``past``).
    """
    one, two = model.init_state(1), model.init_state(2)
    names = model.state_names
    if len(names) != len(one):
        raise ExportError(f"{type(model).__name__}.state_names has {len(names)} names for {len(one)} state tensors")
    layout = []
    for name, a, b in zip(names, one, two):
        shape: list[int | str] = []
        for n1, n2 in zip(a.shape, b.shape):
            shape.append("batch" if n1 != n2 else "past" if n1 == 0 else int(n1))
        values = a.detach().cpu().numpy()
        if values.size and not np.all(values == values.flat[0]):
            raise ExportError(f"state {name!r} does not start from one constant value")
        layout.append({
            "name": name,
            "input": f"past_{name}",
            "output": f"present_{name}",
            "shape": shape,
            "dtype": str(values.dtype),
            "init": values.flat[0].item() if values.size else 0,
        })
    return layout


def uses_recurrent_layers(model: nn.Module) -> bool:
    return any(isinstance(m, _RECURRENT) for m in model.modules())


def _is_transformer(model: nn.Module) -> bool:
    from seqgen.models.transformer import TransformerLM

    return type(model) is TransformerLM


def _example(model: SeqModel, batch: int = 2, seq: int = 5, past: int = 3):
    """Example inputs with every dynamic length >= 2 (so no exporter specializes on 0 or 1)."""
    g = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    with torch.no_grad():
        _, state = model(torch.randint(0, vocab, (batch, past), generator=g), None)
    return torch.randint(0, vocab, (batch, seq), generator=g), tuple(state)


def export_graph(model: SeqModel, path: Path, exporter: str = "auto",
                 opset: int | None = None) -> tuple[str, int, list[dict]]:
    """Write the step graph of ``model`` to ``path``; returns (exporter used, opset, state layout)."""
    model = model.eval().cpu()
    layout = state_layout(model)
    if exporter == "auto":
        exporter = "torchscript" if uses_recurrent_layers(model) else "fused" if _is_transformer(model) else "dynamo"
    ids, state = _example(model)
    inputs = ["ids"] + [s["input"] for s in layout]
    outputs = ["logits"] + [s["output"] for s in layout]
    with _quiet(), torch.no_grad():
        if exporter == "torchscript":
            opset = opset or 17
            axes = {"ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}}
            for s in layout:
                axes[s["input"]] = {i: d for i, d in enumerate(s["shape"]) if isinstance(d, str)}
                axes[s["output"]] = {i: ("present" if d == "past" else d) for i, d in enumerate(s["shape"])
                                     if isinstance(d, str)}
            torch.onnx.export(_FlatStep(model), (ids, *state), str(path), input_names=inputs, output_names=outputs,
                              dynamic_axes=axes, opset_version=opset, dynamo=False, do_constant_folding=True)
        elif exporter == "fused":
            opset, layout = _fused_transformer(model, path)
        elif exporter == "dynamo":
            from torch.export import Dim

            opset = opset or 23
            dims = {"batch": Dim("batch"), "past": Dim("past")}
            ids_shape = {0: dims["batch"], 1: Dim("seq")}
            state_shapes = tuple({i: dims[d] for i, d in enumerate(s["shape"]) if isinstance(d, str)} or None
                                 for s in layout)
            program = torch.onnx.export(_Step(model), (ids, state), input_names=inputs, output_names=outputs,
                                        dynamic_shapes=(ids_shape, state_shapes), opset_version=opset,
                                        dynamo=True, external_data=False, verbose=False)
            program.save(str(path), external_data=False)
        else:
            raise ExportError(f"unknown exporter {exporter!r}; expected auto, fused, torchscript or dynamo")
    return exporter, opset, layout


def _fused_transformer(model: SeqModel, path: Path) -> tuple[int, list[dict]]:
    """Write the transformer step as a hand-built opset-23 graph with fused operators.

    Per layer: LayerNorm, one QKV MatMul, ``RotaryEmbedding`` (interleaved pairs, angles computed
    once per call from ``past_pos``), one ``Attention`` node that appends to the KV cache under the
    sliding-window mask, the MLP. The KV cache is one (B, heads, S, head_dim) tensor per layer
    (``past_k0``, ``past_v0``, ...: the bundle's state layout says so) rather than the model's
    stacked (layers, ...) tensors, which would cost a gather and a concat copy per step.
    About 40% of the generic export's operators, and a small step is dominated by per-operator
    overhead. Weights come from the model; the parity check proves the graph matches its forward.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from seqgen.models.transformer import TransformerLM

    if type(model) is not TransformerLM:
        raise ExportError(f"the fused graph is for TransformerLM, not {type(model).__name__}")
    c = model.config
    hd = c.dim // c.heads
    if not all(isinstance(b.mlp[1], nn.GELU) and b.mlp[1].approximate == "none" for b in model.blocks):
        raise ExportError("the fused graph expects exact GELU in the MLP")
    w = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    inits, nodes = [], []

    def const(name: str, value) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op: str, ins: list[str], out: str | list[str], **attrs) -> str:
        outs = [out] if isinstance(out, str) else out
        nodes.append(helper.make_node(op, ins, outs, name=f"n{len(nodes)}_{op}", **attrs))
        return out

    def linear(x: str, prefix: str, out: str, bias: bool = True) -> str:
        y = node("MatMul", [x, const(f"{prefix}.wt", w[f"{prefix}.weight"].T.copy())], out + ("_mm" if bias else ""))
        return node("Add", [y, const(f"{prefix}.b", w[f"{prefix}.bias"])], out) if bias else y

    def norm(x: str, mod: nn.LayerNorm, prefix: str, out: str) -> str:
        return node("LayerNormalization", [x, const(f"{prefix}.w", w[f"{prefix}.weight"]),
                                           const(f"{prefix}.b", w[f"{prefix}.bias"])], out, epsilon=mod.eps, axis=-1)

    def skip_norm(x: str, skip: str, mod: nn.LayerNorm, prefix: str, bias: str, out: str, total: str,
                  last: bool = False) -> tuple[str, str]:
        ins = [x, skip, const(f"{prefix}.w", w[f"{prefix}.weight"]), const(f"{prefix}.b", w[f"{prefix}.bias"]),
               const(bias, w[bias])]
        node("SkipLayerNormalization", ins, [out, "", "", "" if last else total], domain="com.microsoft",
             epsilon=mod.eps)
        return out, total

    i64 = lambda *v: np.array(v, dtype=np.int64)  # noqa: E731
    # positions: pos .. pos+T-1; angles (T, hd/2); position ids 0..T-1 index them
    node("Shape", ["ids"], "t1", start=1, end=2)  # (1,)
    node("Shape", ["past_k0"], "s1", start=2, end=3)  # (1,)
    node("Squeeze", ["t1"], "t")
    node("Range", [const("zero", np.array(0, np.int64)), "t", const("one", np.array(1, np.int64))], "r")  # (T,)
    node("Add", ["r", "past_pos"], "abs_pos")
    node("Cast", ["abs_pos"], "abs_pos_f", to=TensorProto.FLOAT)
    node("Unsqueeze", ["abs_pos_f", const("ax1", i64(1))], "abs_pos_col")  # (T, 1)
    inv = (c.rope_base ** (-np.arange(0, hd, 2, dtype=np.float32) / hd)).astype(np.float32)[None, :]
    node("Mul", ["abs_pos_col", const("inv_freq", inv)], "ang")  # (T, hd/2)
    node("Cos", ["ang"], "cos")
    node("Sin", ["ang"], "sin")
    node("Shape", ["ids"], "bt")
    node("Expand", ["r", "bt"], "pid")  # (B, T)
    # sliding-window causal mask (T, S+T): key j visible to query i when i+S-window < j <= i+S
    node("Squeeze", ["s1"], "s")
    node("Add", ["r", "s"], "q_pos")
    node("Unsqueeze", ["q_pos", const("ax1b", i64(1))], "q_col")  # (T, 1)
    node("Add", ["s", "t"], "total")
    node("Range", ["zero", "total", "one"], "k_pos")  # (S+T,)
    node("LessOrEqual", ["k_pos", "q_col"], "causal")
    node("Sub", ["q_col", const("window", np.array(c.window, np.int64))], "lo")
    node("Greater", ["k_pos", "lo"], "recent")
    node("And", ["causal", "recent"], "mask")
    x = node("Gather", [const("embed", w["embed.weight"]), "ids"], "x0")  # (B, T, C)
    h = norm(x, model.blocks[0].ln1, "blocks.0.ln1", "blocks.0.h1")
    norms = [*(b.ln1 for b in model.blocks[1:]), model.ln_f]
    norm_names = [*(f"blocks.{i}.ln1" for i in range(1, c.layers)), "ln_f"]
    for i, block in enumerate(model.blocks):
        p = f"blocks.{i}"
        qkv = linear(h, f"{p}.qkv", f"{p}.qkv_out")  # (B, T, 3C)
        node("Split", [qkv], [f"{p}.q", f"{p}.k", f"{p}.v"], axis=2, num_outputs=3)
        for name in ("q", "k"):
            node("RotaryEmbedding", [f"{p}.{name}", "cos", "sin", "pid"], f"{p}.{name}_rot",
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
    node("MatMul", [h, const("head.wt", w["head.weight"].T.copy())], "logits")

    f32, i64t = TensorProto.FLOAT, TensorProto.INT64
    # The graph appends to the cache and never cuts it (a cut is a copy of the whole cache every
    # step); the mask hides keys older than the window, and the engine drops them in one copy
    # when ``trim`` more than ``keep`` have piled up ("keep" in the layout).
    keep = {"axis": 2, "keep": c.window - 1, "slack": max(16, c.window // 4)}
    layout = [{"name": f"{kind}{i}", "input": f"past_{kind}{i}", "output": f"present_{kind}{i}",
               "shape": ["batch", c.heads, "past", hd], "dtype": "float32", "init": 0.0, "trim": keep}
              for kind in ("k", "v") for i in range(c.layers)]
    layout.append({"name": "pos", "input": "past_pos", "output": "present_pos", "shape": [], "dtype": "int64",
                   "init": 0})
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
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23), helper.make_opsetid("com.microsoft", 1)],
                              producer_name="seqgen")
    proto.ir_version = 10
    onnx.checker.check_model(proto)  # (contrib operators are not checked, onnxruntime checks them)
    onnx.save(proto, str(path))
    return 23, layout


# ---- checks -----------------------------------------------------------------------------------
def parity_cases(vocab: int, long: bool = True, seed: int = 1) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """(prefill ids, later chunks) per case: two short prefill lengths, then cached single steps
    and a chunk; with ``long``, a case past the default 256-token window or memory and the slack
    the engine leaves on a sliding KV cache before cutting it."""
    rng = np.random.default_rng(seed)
    ids = lambda b, t: rng.integers(0, vocab, (b, t), dtype=np.int64)  # noqa: E731
    return [
        (ids(1, 7), [ids(1, 1), ids(1, 1)]),
        (ids(3, 13), [ids(3, 1), ids(3, 4)]),
    ] + ([(ids(2, 330), [ids(2, 1), ids(2, 5), ids(2, 1)])] if long else [])


@torch.no_grad()
def max_logit_difference(model: SeqModel, engine, cases=None) -> float:
    """Largest |torch logits - engine logits| over ``parity_cases`` (prefill, cached steps, chunk)."""
    model.eval()
    worst = 0.0
    # The long case is for states that grow and slide (KV caches, attention memories); a fixed-size
    # recurrent state is covered by the short ones.
    slides = any("past" in s["shape"] for s in engine.layout)
    for prefill, chunks in cases or parity_cases(model.config.vocab_size, long=slides):
        state_t, state_o = None, engine.start(prefill.shape[0])
        for x in [prefill, *chunks]:
            logits_t, state_t = model(torch.from_numpy(x), state_t)
            logits_o, state_o = engine.forward(x, state_o)
            if logits_o.shape != tuple(logits_t.shape):
                raise ExportError(f"the graph returned logits of shape {logits_o.shape}, expected {tuple(logits_t.shape)}")
            diff = np.abs(logits_o.astype(np.float64) - logits_t.numpy().astype(np.float64))
            worst = max(worst, float(np.nan_to_num(diff, nan=np.inf).max()))
    return worst


def onnx_stream_loss(engine, tokens: np.ndarray, chunk: int) -> float:
    """``seqgen.evaluate.stream_loss`` through an engine: tokens in order, state carried."""
    tokens = np.asarray(tokens, dtype=np.int64)
    state, total, count = engine.start(1), 0.0, 0
    for i in range(0, len(tokens) - 1, chunk):
        j = min(i + chunk, len(tokens) - 1)
        logits, state = engine.forward(tokens[None, i:j], state)
        z = logits[0].astype(np.float64)
        z = z - z.max(axis=-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
        total -= logp[np.arange(j - i), tokens[i + 1 : j + 1]].sum()
        count += j - i
    return float(total / count)


def validation_slice(ckpt, max_tokens: int) -> tuple[np.ndarray | None, str | None]:
    """The first ``max_tokens`` + 1 tokens of the run's validation split, or (None, why not)."""
    from seqgen.data import load_corpus

    spec = ckpt.extra.get("corpus")
    if not spec:
        return None, "the checkpoint does not name its corpus"
    try:
        data = load_corpus(spec, encoding=ckpt.extra.get("encoding", "utf-8"), tokenizer=ckpt.tokenizer)
        _, val = data.split(ckpt.train.val_fraction)
    except SeqgenError as e:
        return None, f"cannot read the corpus {spec} ({e})"
    if len(val) < 2:
        return None, "the validation split is empty"
    return np.asarray(val[: max_tokens + 1], dtype=np.int64), None


# ---- the bundle -------------------------------------------------------------------------------
def default_out(run: Path | None) -> Path:
    from seqgen.runs import latest_run

    run = Path(run) if run is not None else latest_run()
    name = run.parent.name if run.is_file() else run.resolve().name
    return EXPORTS / name


def quantize_int8(src: Path, dst: Path, work: Path) -> None:
    """Dynamic int8 quantization of the weights; the graph is optimized (constant folding) first."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    optimized = work / "optimized.onnx"
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = str(optimized)
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
    with _quiet():
        # Only the weight-heavy operators: the default list also rewrites opset-23 ``Attention``
        # nodes into com.microsoft ones with other semantics.
        quantize_dynamic(str(optimized), str(dst), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Gemm", "LSTM"],
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})  # contrib ops


def export_checkpoint(ckpt, out: Path, quantize: str | None = None, tolerance: float = TOLERANCE,
                      exporter: str = "auto", opset: int | None = None, loss_tokens: int = 4096,
                      source: str | None = None, force: bool = False,
                      log: Callable[[str], None] = lambda _: None) -> ExportReport:
    """Export a loaded checkpoint to the bundle folder ``out``, checked against torch."""
    from seqgen.engines.onnx_engine import OnnxEngine

    if quantize not in (None, *QUANTIZE):
        raise ExportError(f"unknown quantization {quantize!r}; expected {', '.join(QUANTIZE)}")
    out = Path(out)
    if out.exists() and not force:
        raise ExportError(f"{out} already exists; choose another --out or pass --force to replace it")
    if out.exists() and not (out / BUNDLE_FILE).exists():
        raise ExportError(f"{out} exists and is not a seqgen bundle; refusing to replace it")
    started = time.perf_counter()
    model = ckpt.model.eval().cpu()
    model_type = model.config.to_dict()["type"]
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp", dir=out.parent))
    try:
        fp32 = work / MODEL_FILE
        log(f"exporting {model_type} ({model.num_params():,} parameters)")
        used, opset, layout, diff, engine = _export_checked(model, fp32, exporter, opset, tolerance, log)
        report = ExportReport(path=out, model_type=model_type, exporter=used, opset=opset, max_abs_diff=diff,
                              quantize=quantize)
        if quantize == "int8":
            int8 = work / "model.int8.onnx"
            quantize_int8(fp32, int8, work)
            engine = OnnxEngine(int8, layout)
            report.int8_max_abs_diff = max_logit_difference(model, engine)
            log(f"int8 graph: largest |logit difference| vs torch {report.int8_max_abs_diff:.3g}")
            if not np.isfinite(report.int8_max_abs_diff):
                raise ExportError("the int8 graph produces non-finite logits; no bundle written")
            os.replace(int8, fp32)
        if loss_tokens > 0:
            _compare_losses(ckpt, engine, loss_tokens, report, log)
            change = report.val_loss_change
            if quantize and change is not None and change > INT8_MAX_LOSS_INCREASE:
                raise ExportError(f"int8 quantization raises the validation loss by {change:.3f} nats/token "
                                  f"(limit {INT8_MAX_LOSS_INCREASE}); no bundle written")
        for extra in work.iterdir():
            if extra.name != MODEL_FILE:
                extra.unlink() if extra.is_file() else shutil.rmtree(extra)
        meta = bundle_meta(ckpt, layout, report, source)
        (work / BUNDLE_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(work, out)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    report.seconds = time.perf_counter() - started
    return report


def _export_checked(model, path: Path, exporter: str, opset: int | None, tolerance: float,
                    log) -> tuple[str, int, list[dict], float, object]:
    """Export and check parity; the fused transformer graph falls back to the dynamo exporter."""
    from seqgen.engines.onnx_engine import OnnxEngine

    try:
        used, opset, layout = export_graph(model, path, exporter, opset)
    except Exception as e:  # the exporters raise many kinds; one line is enough for the user
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if exporter == "auto" and _is_transformer(model):
            log(f"the fused transformer graph failed ({first[:160]}); falling back to the dynamo exporter")
            return _export_checked(model, path, "dynamo", None, tolerance, log)
        if isinstance(e, SeqgenError):
            raise
        raise ExportError(f"the {exporter} exporter failed for {type(model).__name__}: {first[:200]}") from None
    engine = OnnxEngine(path, layout)
    diff = max_logit_difference(model, engine)
    log(f"fp32 graph ({used} exporter): largest |logit difference| vs torch {diff:.2e} (tolerance {tolerance:.0e})")
    if not diff <= tolerance:
        if used == "fused" and exporter == "auto":
            log("the fused graph does not match the model; falling back to the dynamo exporter")
            return _export_checked(model, path, "dynamo", None, tolerance, log)
        raise ExportError(f"the exported graph differs from torch by {diff:.3g} (tolerance {tolerance:g}); "
                          "no bundle written")
    return used, opset, layout, diff, engine


def _compare_losses(ckpt, engine, loss_tokens: int, report: ExportReport, log) -> None:
    from seqgen.evaluate import stream_loss

    tokens, why = validation_slice(ckpt, loss_tokens)
    if tokens is None:
        report.notes.append(f"validation loss not compared: {why}")
        log(report.notes[-1])
        return
    chunk = ckpt.train.window
    report.val_loss_torch = stream_loss(ckpt.model, tokens, chunk=chunk)
    report.val_loss_onnx = onnx_stream_loss(engine, tokens, chunk)
    report.val_tokens = len(tokens) - 1
    log(f"validation loss on {report.val_tokens:,} tokens: torch {report.val_loss_torch:.4f}, "
        f"onnx{'-' + report.quantize if report.quantize else ''} {report.val_loss_onnx:.4f} "
        f"(change {report.val_loss_change:+.4f} nats/token)")


def bundle_meta(ckpt, layout: list[dict], report: ExportReport, source: str | None) -> dict:
    return {
        "format": FORMAT,
        "seqgen_version": __version__,
        "model_file": MODEL_FILE,
        "model_type": report.model_type,
        "model_config": ckpt.model.config.to_dict(),
        "objective": ckpt.train.objective,
        "train_window": ckpt.train.window,
        "tokenizer": ckpt.tokenizer.to_dict(),
        "inputs": ["ids"] + [s["input"] for s in layout],
        "outputs": ["logits"] + [s["output"] for s in layout],
        "state": layout,
        "sampling": dict(SAMPLING_DEFAULTS),
        "quantize": report.quantize,
        "export": {
            "exporter": report.exporter,
            "opset": report.opset,
            "torch_version": torch.__version__.split("+")[0],
            "max_abs_diff": report.max_abs_diff,
            "int8_max_abs_diff": report.int8_max_abs_diff,
            "val_loss_torch": report.val_loss_torch,
            "val_loss_onnx": report.val_loss_onnx,
            "source": source,
            "step": ckpt.step,
        },
    }


def export_run(run: Path | None, out: Path | None = None, which: str = "best", **options) -> ExportReport:
    """Export a run folder or checkpoint (None: the most recent run) to ``out`` (default exports/<run>)."""
    from seqgen import checkpoint as ckpt_io
    from seqgen.runs import checkpoint_path

    path = checkpoint_path(run, which)
    ckpt = ckpt_io.load(path)
    if out is None:
        out = default_out(run if run is not None else path)
    return export_checkpoint(ckpt, out, source=str(path), **options)


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
- ``gqa`` for the transformer, on request (``seqgen.export.gqa_graph``): onnxruntime's
  ``GroupQueryAttention`` with a fixed-capacity KV cache written in place (bundle format 2);
  measured no faster than ``fused`` at batch 1 (bench/engine_compare.py), so not the default.
- ``fused``, the transformer's default: a hand-built opset-23 graph from the model's weights with
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
from seqgen.checkpoint import Checkpoint, open_checkpoint, run_data
from seqgen.data.load import Progress
from seqgen.engines.onnx_engine import open_engine
from seqgen.errors import ExportError, FileWriteError, SeqgenError
from seqgen.export.gqa_graph import gqa_transformer_graph
from seqgen.export.transformer_graph import fused_transformer_graph
from seqgen.fileio import fsync_dir, write_text
from seqgen.losses import stream_loss
from seqgen.models import SeqModel
from seqgen.options import SamplingOptions
from seqgen.runs import BUNDLE_FILE, LOOP_FILE, MODEL_FILE, latest_run, locate

EXPORTS = Path("exports")
TOLERANCE = 1e-3  # largest allowed |logit difference| between torch and the fp32 graph
INT8_MAX_LOSS_INCREASE = 0.1  # nats per token; above it an int8 export fails
QUANTIZE = ("int8",)
SAMPLING_DEFAULTS = {"temperature": 1.0, "top_k": None, "top_p": None}
_RECURRENT = (nn.RNN, nn.GRU, nn.LSTM)


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
        elif exporter == "gqa":
            opset, layout, buffer = gqa_transformer_graph(model, path)
            for s in layout:
                s["buffer"] = buffer
        elif exporter == "fused":
            opset, layout = fused_transformer_graph(model, path)
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
            raise ExportError(f"unknown exporter {exporter!r}; expected auto, gqa, fused, torchscript or dynamo")
    return exporter, opset, layout


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
    slides = any("past" in s["shape"] for s in engine.layout) or getattr(engine, "slides", False)
    for prefill, chunks in cases or parity_cases(model.config.vocab_size, long=slides):
        state_t, state_o = None, engine.start(prefill.shape[0])
        for x in [prefill, *chunks]:
            logits_t, state_t = model(torch.from_numpy(x), state_t)
            logits_o, state_o = engine.forward(x, state_o)
            if logits_o.shape != tuple(logits_t.shape):
                raise ExportError(
                    f"the graph returned logits of shape {logits_o.shape}, expected {tuple(logits_t.shape)}"
                )
            diff = np.abs(logits_o.astype(np.float64) - logits_t.numpy().astype(np.float64))
            worst = max(worst, float(np.nan_to_num(diff, nan=np.inf).max()))
    if getattr(engine, "stackable", False) and slides:
        worst = max(worst, stacked_difference(model, engine))
    return worst


@torch.no_grad()
def stacked_difference(model: SeqModel, engine, seed: int = 2) -> float:
    """Largest |torch logits - engine logits| for rows that read different lengths (7, 40 and 330
    tokens, past the window) stacked into one state (``OnnxEngine.stack``), then stepped together
    (single steps, a chunk) and one row taken out (``select``); torch reads each row alone."""
    rng = np.random.default_rng(seed)
    vocab = model.config.vocab_size
    prompts = [rng.integers(0, vocab, (1, n), dtype=np.int64) for n in (7, 40, 330)]
    torch_states, engine_states = [], []
    for p in prompts:
        torch_states.append(model(torch.from_numpy(p), None)[1])
        engine_states.append(engine.forward(p, engine.start(1))[1])
    state, worst = engine.stack(engine_states), 0.0
    for t in (1, 1, 5, 1):
        x = rng.integers(0, vocab, (len(prompts), t), dtype=np.int64)
        logits_o, state = engine.forward(x, state)
        for b in range(len(prompts)):
            logits_t, torch_states[b] = model(torch.from_numpy(x[b : b + 1]), torch_states[b])
            diff = np.abs(logits_o[b : b + 1].astype(np.float64) - logits_t.numpy().astype(np.float64))
            worst = max(worst, float(np.nan_to_num(diff, nan=np.inf).max()))
    state = engine.select(state, [0])
    x = rng.integers(0, vocab, (1, 1), dtype=np.int64)
    logits_t = model(torch.from_numpy(x), torch_states[0])[0]
    diff = np.abs(engine.forward(x, state)[0].astype(np.float64) - logits_t.numpy().astype(np.float64))
    return max(worst, float(np.nan_to_num(diff, nan=np.inf).max()))


def onnx_stream_loss(engine, tokens: np.ndarray, chunk: int) -> float:
    """``seqgen.losses.stream_loss`` through an engine: tokens in order, state carried."""
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


def validation_slice(ckpt: Checkpoint, max_tokens: int,
                     progress: Progress | None = None) -> tuple[np.ndarray | None, str | None]:
    """The first ``max_tokens`` + 1 tokens of the run's validation split, or (None, why not)."""
    if not ckpt.corpus:
        return None, "the checkpoint does not name its corpus"
    try:
        val = run_data(ckpt, progress=progress)[1].val
    except SeqgenError as e:
        return None, f"cannot read the corpus {ckpt.corpus} ({e})"
    if len(val) < 2:
        return None, "the validation split is empty"
    return np.asarray(val[: max_tokens + 1], dtype=np.int64), None


# ---- the bundle -------------------------------------------------------------------------------
def default_out(run: Path | None) -> Path:
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
                      log: Callable[[str], None] = lambda _: None, progress: Progress | None = None) -> ExportReport:
    """Export a loaded checkpoint to the bundle folder ``out``, checked against torch."""
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
            engine = open_engine(int8, layout)
            report.int8_max_abs_diff = max_logit_difference(model, engine)
            log(f"int8 graph: largest |logit difference| vs torch {report.int8_max_abs_diff:.3g}")
            if not np.isfinite(report.int8_max_abs_diff):
                raise ExportError("the int8 graph produces non-finite logits; no bundle written")
            os.replace(int8, fp32)
        if loss_tokens > 0:
            _compare_losses(ckpt, engine, loss_tokens, report, log, progress)
            change = report.val_loss_change
            if quantize and change is not None and change > INT8_MAX_LOSS_INCREASE:
                raise ExportError(f"int8 quantization raises the validation loss by {change:.3f} nats/token "
                                  f"(limit {INT8_MAX_LOSS_INCREASE}); no bundle written")
        loop = _write_sampling_loop(work, engine, model.config.vocab_size, report, log)
        for extra in work.iterdir():
            if extra.name not in (MODEL_FILE, LOOP_FILE):
                extra.unlink() if extra.is_file() else shutil.rmtree(extra)
        meta = bundle_meta(ckpt, layout, report, source)
        if loop:
            meta["loop_file"] = LOOP_FILE
        write_text(work / BUNDLE_FILE, json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(work, out)
        fsync_dir(out.parent)
    except OSError as err:
        raise FileWriteError(f"cannot write the bundle {out}: {err.strerror or err}") from None
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    report.seconds = time.perf_counter() - started
    return report


def _export_checked(model, path: Path, exporter: str, opset: int | None, tolerance: float,
                    log) -> tuple[str, int, list[dict], float, object]:
    """Export and check parity; the fused transformer graph falls back to the dynamo exporter
    when it fails to build, to run or to match the model."""
    try:
        used, opset, layout = export_graph(model, path, exporter, opset)
    except Exception as e:  # the exporters raise many kinds; one line is enough for the user
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if exporter == "auto" and _is_transformer(model):
            nxt = "dynamo"
            log(f"the {_name(exporter)} transformer graph failed ({first[:160]}); falling back to {_name(nxt)}")
            return _export_checked(model, path, nxt, None, tolerance, log)
        if isinstance(e, SeqgenError):
            raise
        raise ExportError(f"the {exporter} exporter failed for {type(model).__name__}: {first[:200]}") from None
    try:
        engine = open_engine(path, layout)
        diff = max_logit_difference(model, engine)
    except (RuntimeError, SeqgenError) as e:  # onnxruntime's errors while running the check
        if used == "fused" and exporter == "auto":
            nxt = "dynamo"
            log(f"the {used} graph fails to run ({str(e).strip()[:160]}); falling back to {_name(nxt)}")
            return _export_checked(model, path, nxt, None, tolerance, log)
        raise ExportError(f"the exported graph fails to run: {str(e).strip()[:200]}") from None
    log(f"fp32 graph ({used} exporter): largest |logit difference| vs torch {diff:.2e} (tolerance {tolerance:.0e})")
    if not diff <= tolerance:
        if used == "fused" and exporter == "auto":
            nxt = "dynamo"
            log(f"the {used} graph does not match the model; falling back to {_name(nxt)}")
            return _export_checked(model, path, nxt, None, tolerance, log)
        raise ExportError(f"the exported graph differs from torch by {diff:.3g} (tolerance {tolerance:g}); "
                          "no bundle written")
    return used, opset, layout, diff, engine


def _name(exporter: str) -> str:
    return {"auto": "fused", "dynamo": "the dynamo exporter"}.get(exporter, exporter)


def _write_sampling_loop(work: Path, step, vocab: int, report: ExportReport, log) -> bool:
    """Write the step graph inside its sampling loop (``seqgen.engines.loop``) beside it, checked
    against ``step`` (the checked engine of that graph): drawn in the loop, ids and
    log-probabilities must be those of one step per call. A graph the loop does not fit (a KV
    buffer bound once) or that fails the check leaves no loop file, and the bundle samples one
    step per call."""
    import onnx

    from seqgen.engines.loop import sampling_loop
    from seqgen.sampling import generate_steps

    if any(s.get("buffer") for s in step.layout):
        return False
    why = "its ids differ from one step per call"
    try:
        onnx.save(sampling_loop(onnx.load(str(work / MODEL_FILE)), step.inputs[1:], step.outputs[1:]),
                  str(work / LOOP_FILE))
        looped = open_engine(work / MODEL_FILE, step.layout, loop_path=work / LOOP_FILE)
        prompt = np.random.default_rng(0).integers(0, vocab, (2, 5), dtype=np.int64)
        opts = SamplingOptions(temperature=1.0)
        runs = [list(generate_steps(e, prompt, 40, opts, np.random.default_rng(1))) for e in (step, looped)]
        same = all(np.array_equal(a[0], b[0]) and np.allclose(a[1], b[1], atol=1e-6) for a, b in zip(*runs))
    except Exception as e:  # onnx and onnxruntime raise many kinds; the bundle still works without it
        same, why = False, (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
    if same:
        log("sampling loop: the same ids as one step per call, many steps per call")
        return True
    (work / LOOP_FILE).unlink(missing_ok=True)
    report.notes.append(f"no sampling loop in the bundle ({why}); it samples one step per call")
    log(report.notes[-1])
    return False


def _compare_losses(ckpt, engine, loss_tokens: int, report: ExportReport, log, progress) -> None:
    tokens, why = validation_slice(ckpt, loss_tokens, progress)
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
        "format": 2 if any(s.get("buffer") for s in layout) else 1,
        "seqgen_version": __version__,
        "model_file": MODEL_FILE,
        "model_type": report.model_type,
        "model_config": ckpt.model.config.to_dict(),
        "objective": ckpt.train.objective,
        "train_window": ckpt.train.window,
        "tokenizer": ckpt.tokenizer.to_dict(),
        "inputs": ["ids"] + [s["input"] for s in layout]
        + (["seqlens_k", "total_sequence_length"] if any(s.get("buffer") for s in layout) else []),
        "outputs": ["logits"] + [s["output"] for s in layout],
        "state": layout,
        "sampling": dict(SAMPLING_DEFAULTS),
        "quantize": report.quantize,
        # the training corpus, so that a bundle's samples can be checked for copies of it
        "corpus": {"spec": ckpt.corpus, "encoding": ckpt.encoding,
                   "val_fraction": ckpt.train.val_fraction, "split": ckpt.train.split},
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
    path = locate(run, which).path
    ckpt = open_checkpoint(path)
    if out is None:
        out = default_out(run if run is not None else path)
    return export_checkpoint(ckpt, out, source=str(path), **options)


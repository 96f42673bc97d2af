"""The onnxruntime step engine: runs an exported bundle with onnxruntime and numpy alone.

This module imports neither torch nor music21 (a test checks ``sys.modules``). A bundle is a
folder with ``model.onnx`` and ``seqgen.json`` (written by ``seqgen.export``); the JSON file
describes the tokenizer, the objective and the state layout, so the engine needs nothing else.

The state of ``OnnxEngine`` travels as numpy arrays: for a state this small (a recurrent model's),
``session.run`` with numpy feeds measured faster than IOBinding. Where the bundle holds its
sampling loop (``seqgen.engines.loop``), ``OnnxEngine.draw`` draws and feeds a chunk of ids in one
call, which ``seqgen.sampling`` and the server use for rows that sample with the temperature
alone. ``KvBufferEngine`` serves a transformer graph built around ``GroupQueryAttention``: its KV
cache is one buffer per tensor, bound once through IOBinding, that the graph writes in place
(``open_engine`` picks the class).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from seqgen.engines.base import Generator
from seqgen.errors import CheckpointError
from seqgen.runs import BUNDLE_FILE, MODEL_FILE
from seqgen.tokenizers import tokenizer_from_dict

FORMAT = 2  # newest bundle format this seqgen reads (2: a KV cache of fixed capacity, ``KvBufferEngine``)
# One intra-op thread: a step of a small model is a few hundred tiny operators, where thread
# hand-offs cost more than they save (measured on 2 cores). SEQGEN_ORT_THREADS overrides it.
DEFAULT_THREADS = 1


def session_options(threads: int | None = None) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    n = threads or int(os.environ.get("SEQGEN_ORT_THREADS", DEFAULT_THREADS))
    so.intra_op_num_threads = n
    so.inter_op_num_threads = 1
    if n == 1:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return so


class OnnxEngine:
    """``start(batch)`` -> initial state; ``advance(ids, state)`` -> (last logits (B, V), state).

    ``layout`` is the ``state`` list of ``seqgen.json``: per tensor its input and output name,
    shape (ints, ``"batch"``, ``"past"``), dtype, initial value and, for a sliding KV cache the
    graph only appends to, ``trim``: the axis, how many entries the model can still see
    (``keep``) and how many more may pile up before the engine cuts them (``slack``).
    """

    def __init__(self, model_path: Path, layout: list[dict], threads: int | None = None,
                 loop_path: Path | None = None):
        self.session = _session(model_path, threads)
        self.layout = layout
        self.inputs = ["ids"] + [s["input"] for s in layout]
        self.outputs = ["logits"] + [s["output"] for s in layout]
        graph_inputs = {i.name for i in self.session.get_inputs()}
        graph_outputs = {o.name for o in self.session.get_outputs()}
        missing = [n for n in self.inputs if n not in graph_inputs] + [
            n for n in self.outputs if n not in graph_outputs
        ]
        if missing:
            raise CheckpointError(
                f"{model_path} does not match its {BUNDLE_FILE}: no {', '.join(missing)} in the graph"
            )
        self._state_inputs = self.inputs[1:]
        # States the graph lets grow past what the model can see (a sliding KV cache): cut to
        # their last ``keep`` entries once ``slack`` more piled up, one copy every ``slack`` steps.
        self._trims = [(i, s["trim"]["axis"], s["trim"]["keep"], s["trim"].get("slack", 0))
                       for i, s in enumerate(layout) if s.get("trim")]
        # the per-row count of empty entries at the front of the cache, when the graph has one
        self._pad = next((i for i, s in enumerate(layout) if s.get("lead")), None)
        # ``stack`` and ``select`` work: every state has a batch axis, and a growing cache comes with
        # its padding count (rows that read different numbers of tokens share one call)
        self.stackable = all("batch" in s["shape"] for s in layout) and (
            self._pad is not None or not any("past" in s["shape"] for s in layout))
        self._run = self.session.run
        self._threads, self._loop_path = threads, loop_path
        self.can_draw = loop_path is not None  # ``draw`` works: the bundle has its sampling loop
        self._loop = None  # the sampling loop's session, opened on the first ``draw``

    def start(self, batch: int) -> tuple:
        state = []
        for s in self.layout:
            shape = [batch if d == "batch" else 0 if isinstance(d, str) else int(d) for d in s["shape"]]
            value = np.full(shape, s.get("init", 0), dtype=np.dtype(s["dtype"]))
            state.append(value)
        return tuple(state)

    def forward(self, ids: np.ndarray, state) -> tuple[np.ndarray, tuple]:
        """All logits (B, T, V) for ``ids`` (B, T), and the new state."""
        feed = dict(zip(self._state_inputs, state))
        feed["ids"] = np.ascontiguousarray(ids, dtype=np.int64)
        out = self._run(self.outputs, feed)
        return out[0], self._cut(out[1:])

    def _cut(self, state: list) -> tuple:
        """The state with each sliding cache that grew past ``keep + slack`` cut to its last ``keep``
        (the padding at the front goes first)."""
        dropped = 0
        for i, axis, keep, slack in self._trims:
            if state[i].shape[axis] > keep + slack:
                dropped = state[i].shape[axis] - keep
                state[i] = np.ascontiguousarray(state[i][(slice(None),) * axis + (slice(-keep, None),)])
        if dropped and self._pad is not None:
            state[self._pad] = np.maximum(state[self._pad] - dropped, 0)
        return tuple(state)

    def _axes(self) -> list[int]:
        return [s["shape"].index("batch") for s in self.layout]

    def stack(self, states: list[tuple]) -> tuple:
        """One state of the rows of ``states`` (each a state of any batch), in order. Caches of
        different lengths are padded at the front to the longest; the padding count says so."""
        if not self.stackable:
            raise ValueError("this bundle's state cannot stack rows that read different lengths")
        first = self._trims[0][:2] if self._trims else None  # a growing cache: (its index, its axis)
        lengths = [st[first[0]].shape[first[1]] if first else 0 for st in states]
        longest = max(lengths)
        grow = {i: axis for i, axis, _, _ in self._trims}
        out = []
        for i, axis in enumerate(self._axes()):
            parts = []
            for st, n in zip(states, lengths):
                x = st[i]
                if i in grow and n < longest:
                    widths = [(0, 0)] * x.ndim
                    widths[grow[i]] = (longest - n, 0)
                    x = np.pad(x, widths)
                elif i == self._pad:
                    x = x + (longest - n)
                parts.append(x)
            out.append(np.concatenate(parts, axis=axis))
        return tuple(out)

    def select(self, state: tuple, rows: list[int]) -> tuple | None:
        """The state of ``rows`` alone (None for no rows); padding every row shares is cut off."""
        if not rows:
            return None
        out = [np.take(x, rows, axis=axis) for x, axis in zip(state, self._axes())]
        if self._pad is not None and self._trims:
            common = int(out[self._pad].min())
            if common:
                for i, axis, _, _ in self._trims:
                    out[i] = np.ascontiguousarray(out[i][(slice(None),) * axis + (slice(common, None),)])
                out[self._pad] = out[self._pad] - common
        return tuple(out)

    def advance(self, ids: np.ndarray, state) -> tuple[np.ndarray, tuple]:
        logits, state = self.forward(ids, state)
        return logits[:, -1], state

    def draw(self, logits: np.ndarray, state, uniforms: np.ndarray, temperature: float, bias: np.ndarray):
        """Draw and feed up to ``len(uniforms)`` ids per row in one call (``seqgen.engines.loop``):
        from ``logits`` (B, V), with ``uniforms`` (n, B) in [0, 1), ``temperature`` > 0 (or one
        per row, (B, 1)) and ``bias`` (V,) or (B, V) added first (-inf: never drawn). Returns (ids
        (k, B), their log-probabilities (k, B), the logits after the last id (B, V), the state),
        k <= n: a sliding cache takes no more steps at once than it would before its next cut, so
        the same tokens come out as one ``advance`` per step gives."""
        n = len(uniforms)
        for i, axis, keep, slack in self._trims:
            n = min(n, keep + slack + 1 - state[i].shape[axis])
        if self._loop is None:
            if self._loop_path is None:
                raise ValueError("this bundle has no sampling loop (an older export); advance step by step")
            self._loop = _session(self._loop_path, self._threads)
        feed = dict(zip(self._state_inputs, state))
        feed.update(logits_in=np.ascontiguousarray(logits, dtype=np.float32),
                    uniforms=np.ascontiguousarray(uniforms[:n], dtype=np.float64),
                    temperature=np.array(temperature, dtype=np.float64), bias=np.asarray(bias, dtype=np.float64))
        out = self._loop.run(None, feed)
        return out[-2], out[-1], out[0], self._cut(list(out[1:-2]))


class KvState:
    """A ``KvBufferEngine`` state: the cache buffers (numpy arrays onnxruntime reads and writes in
    place), of which the first ``batch`` rows are in use (a pool may hold spare rows), how many
    positions each row holds, and the binding of those rows. ``advance`` updates it in place;
    ``stack`` and ``select`` reuse its buffers."""

    def __init__(self, arrays: list[np.ndarray], lengths):
        self.arrays = arrays  # each (room, heads, capacity, head dim)
        self.lengths = np.asarray(lengths, dtype=np.int64)  # (batch,)
        self.binding, self.bound, self.values = None, -1, []  # the binding, the batch it binds, its OrtValues

    @property
    def batch(self) -> int:
        return len(self.lengths)

    @property
    def length(self) -> int:
        """The longest row's positions."""
        return int(self.lengths.max()) if len(self.lengths) else 0


class KvBufferEngine:
    """The engine of a ``GroupQueryAttention`` bundle (``buffer`` in its state layout): the cache
    has ``capacity`` positions per row; a call that would run a row past it first keeps that
    row's last ``keep`` positions at the front, the kept keys rotated back by the positions
    dropped (rotary embedding is relative), and a long text is read in chunks that fit. Rows
    that read different numbers of tokens step together: each row's own length goes to the graph
    (``seqlens_k``), which writes and reads each row's cache where that row is."""

    def __init__(self, model_path: Path, layout: list[dict], threads: int | None = None):
        self.session = _session(model_path, threads)
        self.layout = layout
        buf = layout[0]["buffer"]
        self.capacity, self.keep, self.axis = int(buf["capacity"]), int(buf["keep"]), int(buf["axis"])
        rot = buf["rotary"]
        self.inv_freq = rot["base"] ** (-np.arange(0, rot["dim"], 2, dtype=np.float64) / rot["dim"])
        self.rotated = [i for i, s in enumerate(layout) if s.get("rotated", s["name"].startswith("k"))]
        self.slides = True  # the export's parity check reads a text past the window
        self.stackable = True  # ``stack`` and ``select`` work

    def _arrays(self, room: int) -> list[np.ndarray]:
        return [np.zeros([room if d == "batch" else int(d) for d in s["shape"]], dtype=np.float32)
                for s in self.layout]

    def start(self, batch: int) -> KvState:
        return KvState(self._arrays(batch), np.zeros(batch, dtype=np.int64))

    def _bind(self, state: KvState):
        """The binding of the state's rows in use (made again when their number changed)."""
        if state.bound != state.batch:
            binding = self.session.io_binding()
            binding.bind_output("logits")
            values = []
            for s, a in zip(self.layout, state.arrays):
                value = ort.OrtValue.ortvalue_from_numpy(a[: state.batch])  # shares the buffer's memory
                binding.bind_ortvalue_input(s["input"], value)
                binding.bind_ortvalue_output(s["output"], value)  # past and present: one buffer
                values.append(value)
            state.binding, state.bound, state.values = binding, state.batch, values
        return state.binding

    def stack(self, states: list[KvState]) -> KvState:
        """One state of the rows of ``states``, in order; the first state's buffers are reused
        when they have room (they grow by doubling otherwise), so a row that joins costs a copy of
        its own positions only. The states given are used up."""
        total = sum(st.batch for st in states)
        first = states[0]
        if first.arrays[0].shape[0] >= total:
            arrays, at = first.arrays, first.batch
        else:
            arrays = self._arrays(max(total, 2 * first.arrays[0].shape[0]))
            for a, old in zip(arrays, first.arrays):
                a[: first.batch] = old[: first.batch]
            at = first.batch
        for st in states[1:]:
            for r, n in enumerate(st.lengths.tolist()):
                for a, old in zip(arrays, st.arrays):
                    a[at, :, :n] = old[r, :, :n]
                at += 1
        return KvState(arrays, np.concatenate([st.lengths for st in states]))

    def select(self, state: KvState, rows: list[int]) -> KvState | None:
        """The state of ``rows`` alone, in that order (None for no rows): each kept row's positions
        moved up in the same buffers. ``state`` is used up."""
        if not rows:
            return None
        for j, k in enumerate(rows):
            if j != k:
                n = int(state.lengths[k])
                for a in state.arrays:
                    a[j, :, :n] = a[k, :, :n]
        return KvState(state.arrays, state.lengths[rows])

    def _trim(self, state: KvState, row: int) -> None:
        n, keep = int(state.lengths[row]), self.keep
        drop = n - keep
        cos, sin = np.cos(drop * self.inv_freq), np.sin(drop * self.inv_freq)
        for i, a in enumerate(state.arrays):
            kept = a[row, :, drop:n].astype(np.float64)
            if i in self.rotated:  # each pair (x0, x1) turned back by drop positions
                x0, x1 = kept[..., 0::2].copy(), kept[..., 1::2].copy()
                kept[..., 0::2] = x0 * cos + x1 * sin
                kept[..., 1::2] = x1 * cos - x0 * sin
            a[row, :, :keep] = kept
        state.lengths[row] = keep

    def _call(self, ids: np.ndarray, state: KvState) -> np.ndarray:
        b, t = ids.shape
        if b > 1 and t > 1 and state.lengths.any():  # GroupQueryAttention reads a chunk after a past at batch 1 only
            return np.concatenate([self._call(ids[:, j : j + 1], state) for j in range(t)], axis=1)
        io = self._bind(state)
        io.bind_cpu_input("ids", ids)
        io.bind_cpu_input("seqlens_k", (state.lengths + (t - 1)).astype(np.int32))
        io.bind_cpu_input("total_sequence_length", np.array(state.length + t, dtype=np.int32))
        io.bind_output("logits")
        self.session.run_with_iobinding(io)
        state.lengths += t
        return io.get_outputs()[0].numpy()

    def forward(self, ids: np.ndarray, state: KvState) -> tuple[np.ndarray, KvState]:
        """All logits (B, T, V) for ``ids`` (B, T); ``state`` is updated in place and returned."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if ids.shape[0] != state.batch:
            raise ValueError(f"Expected ids of batch {state.batch}, got {ids.shape[0]}")
        out, at = [], 0
        while at < ids.shape[1]:
            need = ids.shape[1] - at
            for row in np.flatnonzero((state.lengths + need > self.capacity) & (state.lengths > self.keep)).tolist():
                self._trim(state, row)
            n = min(self.capacity - state.length, need)
            out.append(self._call(ids[:, at : at + n], state))
            at += n
        return (out[0] if len(out) == 1 else np.concatenate(out, axis=1)), state

    def advance(self, ids: np.ndarray, state: KvState) -> tuple[np.ndarray, KvState]:
        logits, state = self.forward(ids, state)
        return logits[:, -1], state


def _session(model_path: Path, threads: int | None):
    try:
        return ort.InferenceSession(str(model_path), session_options(threads), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"onnxruntime cannot load {model_path}: {first[:200]}") from None


def open_engine(model_path: Path, layout: list[dict], threads: int | None = None, loop_path: Path | None = None):
    """The engine a state layout needs: ``KvBufferEngine`` for a fixed-capacity KV cache, else
    ``OnnxEngine`` (which draws chunks of ids itself when given the bundle's ``loop_path``)."""
    if any(s.get("buffer") for s in layout):
        return KvBufferEngine(model_path, layout, threads)
    return OnnxEngine(model_path, layout, threads, loop_path)


def read_meta(path: Path) -> dict:
    """``seqgen.json`` of a bundle, checked: CheckpointError for a missing file or a newer format."""
    path = Path(path)
    meta_path = path / BUNDLE_FILE
    if not meta_path.is_file():
        raise CheckpointError(f"{path} is not a seqgen bundle: {BUNDLE_FILE} is missing")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{meta_path} is unreadable ({e})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("format"), int):
        raise CheckpointError(f"{meta_path} is not a seqgen bundle description (no format number)")
    if meta["format"] > FORMAT:
        raise CheckpointError(
            f"bundle {path} has format {meta['format']} (from seqgen {meta.get('seqgen_version', '?')}); "
            f"this seqgen reads format {FORMAT}: upgrade seqgen"
        )
    missing = [k for k in ("tokenizer", "model_type", "objective", "state") if k not in meta]
    if missing:
        raise CheckpointError(f"{meta_path} lacks {', '.join(missing)}; re-export the run")
    model_file = path / meta.get("model_file", MODEL_FILE)
    if not model_file.is_file():
        raise CheckpointError(f"bundle {path} is incomplete: {model_file.name} is missing; re-export the run")
    return meta


def open_bundle(path: Path, threads: int | None = None) -> Generator:
    """A ``Generator`` over an exported bundle folder (onnxruntime, no torch)."""
    path = Path(path)
    meta = read_meta(path)
    loop = path / meta["loop_file"] if meta.get("loop_file") else None
    if loop is not None and not loop.is_file():
        raise CheckpointError(f"bundle {path} is incomplete: {loop.name} is missing; re-export the run")
    engine = open_engine(path / meta.get("model_file", MODEL_FILE), meta["state"], threads, loop)
    return Generator(
        engine=engine,
        tokenizer=tokenizer_from_dict(meta["tokenizer"]),
        model_type=meta["model_type"],
        objective=meta["objective"],
        source=path,
        info={"bundle": meta, "quantize": meta.get("quantize"), "sampling": meta.get("sampling", {}),
              "window": meta.get("model_config", {}).get("window", meta.get("train_window"))},
    )

"""Many streams, one step: a worker thread that advances every active row with one engine call.

Each request row (``RowJob``) waits in a bounded queue until a place frees up; between two steps
the worker reads the prompts of the rows that join (one prefill call for the prompts of one
length when the rows stack, else one per row) and drops the rows
that ended or whose client went away. Every step then draws each row's next token under that
row's own options (``seqgen.sampling.pick``: its rng, its repetition guard, its banned ids) and
advances all rows in one ``engine.advance`` call, their states stacked along the batch axis.
When the engine draws itself (a bundle's sampling loop, ``OnnxEngine.draw``) and every row
samples with its temperature alone, one call instead draws ``DRAW_STEPS`` steps of every row,
each row from its own random numbers, and the rows then take their ids in order.

The rows' states are stacked by the engine (``stack`` and ``select``): a recurrent state along
its batch axis, a transformer's KV cache padded at the front to the longest row's length, with
each row's position and padding count in the state (``OnnxEngine``), or a fixed-capacity KV
buffer whose rows each hold their own length (``KvBufferEngine``), so rows that read different
numbers of tokens still share one call; the torch engine stacks the rows of a recurrent model
(its state has a fixed size). An engine that cannot (the torch engine of a model whose state
grows with what it read; a transformer bundle exported before the padding count) advances each
row with its own call, still in the worker thread and still interleaved step by step.

The worker never touches the event loop: each row's ``sink`` is called with ``RowEvent``s and the
caller forwards them (``loop.call_soon_threadsafe``). Nothing here prints.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from seqgen.errors import SeqgenError
from seqgen.options import SamplingOptions
from seqgen.sampling import RepeatGuard, StopMatcher, exempt_ids, log_softmax, pick


DRAW_STEPS = 16  # steps per engine call when the engine draws (rows join, leave and see a cancel between calls)


class QueueFull(SeqgenError):
    """More requests wait than the queue holds."""


class Closed(SeqgenError):
    """The server is shutting down and takes no new rows."""


@dataclass
class RowEvent:
    """What a row tells its client: a piece of text now safe to show (with the log-probabilities
    of the tokens it completes when asked), or the end (``finish_reason`` set)."""

    text: str = ""
    tokens: list[str] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top: list[dict[str, float]] = field(default_factory=list)
    finish_reason: str | None = None
    completion_tokens: int = 0
    error: str | None = None


@dataclass
class RowJob:
    prompt: np.ndarray  # (P,) int64
    steps: int
    options: SamplingOptions
    rng: np.random.Generator
    sink: Callable[[RowEvent], None]
    stops: tuple[str, ...] = ()
    logprobs: int | None = None  # None: off; k: also the k most likely tokens of each step
    stop_id: int | None = None
    banned: tuple[int, ...] = ()
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True  # read by the worker between steps


class _Row:
    def __init__(self, job: RowJob, logits: np.ndarray, state, vocab: int, exempt):
        self.job = job
        self.logits = logits  # (1, V)
        self.state = state  # the row's own state when rows are not stacked
        self.matcher = StopMatcher(job.stops)
        self.guard = RepeatGuard(job.options, vocab, job.prompt[None], exempt) if job.options.guarded else None
        self.pending: list[tuple[str, float, dict]] = []  # drawn, not yet shown (a stop string may follow)
        self.shown = 0  # characters of the matcher's text already reported
        self.count = 0
        self.next = 0  # the id drawn this step
        self.unused = np.zeros(0)  # random numbers drawn for steps the engine did not take: used first
        self.done = False
        self.bias = np.zeros(vocab)  # what the engine adds to the logits before drawing: -inf for banned ids
        self.bias[list(job.banned)] = -np.inf


class Batcher:
    """``submit(job)`` queues a row; the worker thread decodes every admitted row step by step.

    ``max_rows``: rows decoded together; ``max_queue``: rows that may wait for a place (more is
    ``QueueFull``). ``stats()`` tells the active and waiting counts."""

    def __init__(self, gen, max_rows: int = 64, max_queue: int = 64):
        self.gen = gen
        self.engine = gen.engine
        self.tokenizer = gen.tokenizer
        self.vocab = gen.tokenizer.vocab_size
        self.exempt = exempt_ids(gen.tokenizer)
        self.pieces = [gen.tokenizer.decode([i]) for i in range(self.vocab)]  # each id's text, as decoded alone
        self.max_rows, self.max_queue = max_rows, max_queue
        self.stacks = getattr(self.engine, "stackable", False)  # rows share one engine call
        self.draws = getattr(self.engine, "can_draw", False)  # the onnxruntime engine draws chunks itself
        self._waiting: deque[RowJob] = deque()
        self._rows: list[_Row] = []
        self._state = None  # stacked state of self._rows when the engine stacks rows
        self._cv = threading.Condition()
        self._closed = False
        self.steps = 0
        self._thread = threading.Thread(target=self._loop, name="seqgen-batcher", daemon=True)
        self._thread.start()

    # ---- the caller's side ----------------------------------------------------------------
    def submit(self, jobs: list[RowJob]) -> None:
        """Queue the rows of one request, all or none."""
        with self._cv:
            if self._closed:
                raise Closed("the server is shutting down")
            free = self.max_rows - len(self._rows)
            if len(self._waiting) + len(jobs) - max(0, free) > self.max_queue:
                raise QueueFull(f"{len(self._waiting)} rows already wait (queue holds {self.max_queue})")
            self._waiting.extend(jobs)
            self._cv.notify()

    def stats(self) -> dict:
        with self._cv:
            return {"active": len(self._rows), "waiting": len(self._waiting), "steps": self.steps}

    def close(self, timeout: float = 5.0) -> None:
        """Take no new rows; cancel what is left and stop the worker."""
        with self._cv:
            self._closed = True
            for job in self._waiting:
                job.cancel()
            for row in self._rows:
                row.job.cancel()
            self._cv.notify()
        self._thread.join(timeout)

    # ---- the worker -----------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._waiting and not self._rows and not self._closed:
                    self._cv.wait()
                if self._closed and not self._rows and not self._waiting:
                    return
                joining = []
                while self._waiting and len(self._rows) + len(joining) < self.max_rows:
                    joining.append(self._waiting.popleft())
            try:
                self._admit(joining)
                self._step()
            except Exception as e:  # an engine failure ends the rows it touched, not the server
                message = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
                with self._cv:
                    rows, self._rows, self._state = self._rows, [], None
                for job in [row.job for row in rows] + joining:
                    _send(job, RowEvent(finish_reason="error", error=message))

    def _admit(self, jobs: list[RowJob]) -> None:
        """Read the prompts of the rows that join: when the engine stacks rows, the prompts of one
        length in one call (their states come out stacked), else one call per row."""
        groups: dict[int, list[RowJob]] = {}
        for k, job in enumerate(job for job in jobs if not job.cancelled):
            groups.setdefault(len(job.prompt) if self.stacks else k, []).append(job)
        if not groups:
            return
        new, states = [], [self._state] if self._rows else []
        for group in groups.values():
            prompts = np.stack([job.prompt for job in group])  # (rows, P)
            logits, state = self.engine.advance(prompts, self.engine.start(len(group)))
            logits = np.asarray(logits)
            own = None if self.stacks else state  # a row that does not stack keeps its own state
            new.extend(_Row(job, logits[k : k + 1], own, self.vocab, self.exempt) for k, job in enumerate(group))
            states.append(state)
        if self.stacks:
            self._state = self.engine.stack(states) if len(states) > 1 else states[0]
        with self._cv:
            self._rows.extend(new)

    def _step(self) -> None:
        rows = self._rows
        if not rows:
            return
        for row in rows:
            if row.job.cancelled:
                row.done = True
        if self._drawable([row for row in rows if not row.done]):
            self._prune()
            if self._rows:
                self._draw(self._rows)
            return
        drawing = [row for row in rows if not row.done]
        for row, i in zip(drawing, self._choose(drawing)):
            row.next = i
            self._accept(row, i)
        rows = self._prune()
        if not rows:
            return
        nxt = np.array([row.next for row in rows], dtype=np.int64)
        if self.stacks:
            logits, self._state = self.engine.advance(nxt[:, None], self._state)
            logits = np.asarray(logits)
            for k, row in enumerate(rows):
                row.logits = logits[k : k + 1]
        else:
            for k, row in enumerate(rows):
                logits, row.state = self.engine.advance(nxt[k : k + 1, None], row.state)
                row.logits = np.asarray(logits)
        self.steps += 1

    def _prune(self) -> list[_Row]:
        """Drop the rows that ended (and their part of the stacked state); the rows left."""
        rows = self._rows
        keep = [k for k, row in enumerate(rows) if not row.done]
        if len(keep) < len(rows):
            with self._cv:
                self._rows = [rows[k] for k in keep]
            if self.stacks and self._state is not None:
                self._state = self.engine.select(self._state, keep)
        return self._rows

    def _drawable(self, rows: list[_Row]) -> bool:
        """Whether every row's next ids can be drawn in the engine (``draw``: a chunk of steps per
        call): stacked states, and each row drawing with its temperature alone."""
        return bool(rows) and self.stacks and self.draws and all(
            row.guard is None and row.job.logprobs is None and row.job.options.temperature_only for row in rows)

    def _draw(self, rows: list[_Row]) -> None:
        """Up to ``DRAW_STEPS`` steps of every row in one engine call: each row's ids drawn from its
        own random numbers (so it draws what it would alone) and fed; then each row takes its ids
        in order, and one that ends mid-chunk leaves the rest unread (it is dropped next step)."""
        steps = max(1, min(DRAW_STEPS, max(row.job.steps - row.count for row in rows)))
        u = np.stack([self._uniforms(row, steps) for row in rows], axis=1)  # (steps, rows)
        temperature = np.array([[row.job.options.temperature] for row in rows])
        bias = np.stack([row.bias for row in rows])
        logits = np.concatenate([row.logits for row in rows])
        ids, _, logits, self._state = self.engine.draw(logits, self._state, u, temperature, bias)
        for k, (row, row_ids) in enumerate(zip(rows, ids.T.tolist())):
            row.unused = u[len(ids):, k]  # a sliding cache took fewer steps: these numbers come first next time
            if row.matcher.stops:
                for i in row_ids:  # the row's chunk taken id by id (a stop string may end it), then shown
                    if row.done:
                        break
                    self._accept(row, i, report=False)
                if not row.done:
                    self._report(row)
            else:
                self._take(row, row_ids)
            row.logits = logits[k : k + 1]
        self.steps += len(ids)

    @staticmethod
    def _uniforms(row: _Row, n: int) -> np.ndarray:
        """The row's next ``n`` random numbers: those left over from the last chunk, then its rng's."""
        have, row.unused = row.unused[:n], row.unused[n:]
        return np.concatenate([have, row.job.rng.random(n - len(have))]) if len(have) < n else have

    def _choose(self, rows: list[_Row]) -> list[int]:
        """Each row's next id under its own options. Rows drawing with the temperature alone are
        drawn together (one row's arithmetic of ``seqgen.sampling.pick`` on a (rows, V) array,
        each row's random number from its own generator, so a row draws what it would alone)."""
        out = [0] * len(rows)
        plain: dict[tuple, list[int]] = {}
        for k, row in enumerate(rows):
            o = row.job.options
            if row.guard is None and o.temperature_only:
                plain.setdefault(tuple(row.job.banned), []).append(k)
            else:
                out[k] = int(pick(row.logits, o, row.job.rng, row.guard, row.job.banned)[0])
        for banned, ks in plain.items():
            z = np.concatenate([rows[k].logits for k in ks]).astype(np.float64)  # (R, V)
            if banned:
                z[:, list(banned)] = -np.inf
            t = np.array([rows[k].job.options.temperature for k in ks])[:, None]
            c = np.cumsum(np.exp((z - z.max(axis=1, keepdims=True)) / t), axis=1)
            u = np.array([self._uniforms(rows[k], 1)[0] for k in ks])
            ids = (c <= (u * c[:, -1])[:, None]).sum(axis=1)
            for k, i in zip(ks, ids.tolist()):
                if i >= c.shape[1]:  # u * total rounded up to the total: the last id with mass
                    i = int(np.flatnonzero(np.diff(c[ks.index(k)], prepend=0.0) > 0)[-1])
                out[k] = i
        return out

    def _accept(self, row: _Row, i: int, report: bool = True) -> None:
        """Take a row's drawn id: report what is now safe to show (unless the caller reports after
        a chunk of ids); mark the row done at its end, which always reports."""
        job = row.job
        row.count += 1
        if job.stop_id is not None and i == job.stop_id:
            self._finish(row, "stop")
            return
        if row.guard is not None:
            row.guard.push(np.array([i]))
        lp, top = 0.0, {}
        if job.logprobs is not None:
            logp = log_softmax(row.logits)[0]
            lp = float(logp[i])
            if job.logprobs > 0:
                best = np.argsort(-logp, kind="stable")[: job.logprobs]
                top = {self.tokenizer.decode([int(b)]): float(logp[b]) for b in best}
        piece = self.pieces[i]
        row.pending.append((piece, lp, top))
        row.matcher.push(piece)
        if row.matcher.hit is not None:
            self._finish(row, "stop")
        elif row.count >= job.steps:
            row.matcher.flush()
            self._finish(row, "length")
        elif report:
            self._report(row)

    def _take(self, row: _Row, ids: list[int]) -> None:
        """A chunk of ids of a row without stop strings, taken at once: what ``_accept`` does id by
        id (the stop id ends the row and counts, the token budget ends it), then one event."""
        job = row.job
        ids = ids[: job.steps - row.count]
        end = "length" if row.count + len(ids) >= job.steps else None
        if job.stop_id is not None and job.stop_id in ids:
            ids = ids[: ids.index(job.stop_id) + 1]
            end = "stop"
        row.count += len(ids)
        pieces = [self.pieces[i] for i in (ids[:-1] if end == "stop" else ids)]
        row.pending.extend((p, 0.0, {}) for p in pieces)
        row.matcher.push("".join(pieces))
        if end is None:
            self._report(row)
        else:
            row.matcher.flush()
            self._finish(row, end)

    def _report(self, row: _Row, finish: str | None = None) -> None:
        text = row.matcher.text
        event = RowEvent(text=text[row.shown:], finish_reason=finish)
        if row.matcher.held or row.matcher.hit is not None:  # pieces whose text is shown go out, the rest wait
            n, k = row.shown, 0
            while k < len(row.pending) and n + len(row.pending[k][0]) <= len(text):
                n += len(row.pending[k][0])
                k += 1
            shown, row.pending = row.pending[:k], row.pending[k:]
        else:
            shown, row.pending = row.pending, []
        if shown:
            event.tokens, event.logprobs, event.top = (list(x) for x in zip(*shown))
        row.shown = len(text)
        if finish is not None:
            event.completion_tokens = row.count
        if event.text or finish is not None:
            _send(row.job, event)

    def _finish(self, row: _Row, reason: str) -> None:
        row.done = True
        self._report(row, reason)


def _send(job: RowJob, event: RowEvent) -> None:
    try:
        job.sink(event)
    except Exception:  # a sink whose client went away must not stop the other rows
        job.cancel()


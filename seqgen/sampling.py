"""Sampling rules and the generation loop, in numpy: shared by the torch and onnxruntime engines.

``sample_next`` is pure: logits in, ids out. Temperature 0 means greedy (argmax, no division).
An engine is anything with ``advance(ids (B, T) int64, state) -> (last logits (B, V), state)``
and ``start()`` returning the initial state; the loop below never asks which engine it holds.

The options of one request are one ``SamplingOptions`` (``seqgen.options``); ``pick`` applies
them to a step's logits (every loop here goes through it). Per request, and per row:
``RepeatGuard`` keeps each row's history for the repetition guards, ``StopMatcher`` cuts one
row's text before a stop string, ``run_rows`` decodes rows to ``Completion``s and streams their
safe text through a callback (``complete_text`` and ``infill_text`` over it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

import numpy as np

from seqgen.errors import ConfigError, SeqgenError
from seqgen.objectives import FimIds, infill_prompt
from seqgen.options import DEFAULT_REPEAT_WINDOW, SamplingOptions

__all__ = ["DEFAULT_REPEAT_WINDOW", "Completion", "Engine", "RepeatGuard", "SamplingOptions", "StopMatcher",
           "check_options", "check_stops", "complete", "complete_text", "exempt_ids", "filtered_probs",
           "generate", "generate_steps", "infill", "infill_text", "log_softmax", "pick", "require_infill", "run_rows",
           "sample_next"]


class Engine(Protocol):
    def start(self, batch: int): ...

    def advance(self, ids: np.ndarray, state) -> tuple[np.ndarray, object]: ...


def check_options(temperature: float, top_k: int | None, top_p: float | None, min_p: float | None = None) -> None:
    """One ConfigError line for a value out of range (``SamplingOptions.check`` checks them all)."""
    SamplingOptions(temperature, top_k, top_p, min_p).check()


def _options(options: SamplingOptions | None, temperature: float, top_k: int | None,
             top_p: float | None) -> SamplingOptions:
    return (options if options is not None else SamplingOptions(temperature, top_k, top_p)).check()


def filtered_probs(logits: np.ndarray, temperature: float, top_k: int | None = None,
                   top_p: float | None = None, min_p: float | None = None) -> np.ndarray:
    """(B, V) probabilities after temperature, top-k, top-p (nucleus) and min-p filtering."""
    z = np.asarray(logits, dtype=np.float64)
    if top_k is not None and top_k < z.shape[-1]:
        k = int(top_k)  # 3.0 passes check_options; np.partition wants an int
        kth = np.partition(z, -k, axis=-1)[:, -k][:, None]
        z = np.where(z < kth, -np.inf, z)
    # the maximum goes before the division: a tiny temperature then sends the others to -inf,
    # where dividing first overflows every logit to inf (and the probabilities to nan)
    with np.errstate(over="ignore", invalid="ignore"):  # overflowing to -inf is the point
        z = (z - z.max(axis=-1, keepdims=True)) / temperature
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-p, axis=-1, kind="stable")
        sorted_p = np.take_along_axis(p, order, axis=-1)
        before = np.cumsum(sorted_p, axis=-1) - sorted_p  # mass of the tokens ranked above
        keep_sorted = before < top_p  # smallest set whose mass reaches top_p
        keep = np.zeros_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, axis=-1)
        p = np.where(keep, p, 0.0)
        p /= p.sum(axis=-1, keepdims=True)
    if min_p:  # keep what is at least min_p times the most likely token (after temperature)
        p = np.where(p >= min_p * p.max(axis=-1, keepdims=True), p, 0.0)
        p /= p.sum(axis=-1, keepdims=True)
    return p


def _draw(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    c = np.cumsum(p, axis=-1)
    u = rng.random((p.shape[0], 1))
    # the first id whose cumulative mass passes u times the cumulative total (p.sum() rounds
    # differently), and never past the last id with mass: a draw near 1 stays in the support
    last = p.shape[-1] - 1 - (p[:, ::-1] > 0).argmax(axis=-1)
    idx = np.minimum((c <= u * c[:, -1:]).sum(axis=-1), last)
    return idx.astype(np.int64)


def sample_next(logits: np.ndarray, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, rng: np.random.Generator | None = None,
                min_p: float | None = None) -> np.ndarray:
    """Pick the next id of each row of ``logits`` (B, V). Returns (B,) int64."""
    check_options(temperature, top_k, top_p, min_p)
    logits = np.asarray(logits)
    if logits.ndim != 2:
        raise ValueError(f"Expected logits to be 2D (batch, vocab), got {logits.ndim}D")
    if temperature == 0:
        return logits.argmax(axis=-1).astype(np.int64)
    p = filtered_probs(logits, temperature, top_k, top_p, min_p)
    return _draw(p, rng if rng is not None else np.random.default_rng())


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


# ---- the repetition guard ---------------------------------------------------------------------
def exempt_ids(tokenizer) -> np.ndarray:
    """Ids the repetition guard never touches: whitespace characters and the sentinels of a
    character tokenizer; for MIDI tokens everything but Pitch and Drum (bars, positions,
    durations, velocities, programs repeat by the grammar)."""
    v = tokenizer.vocab_size
    if hasattr(tokenizer, "kinds_of"):
        from seqgen.tokenizers.midi import K

        kinds = tokenizer.kinds_of(np.arange(v))
        return np.flatnonzero((kinds != K["Pitch"]) & (kinds != K["Drum"])).astype(np.int64)
    chars = getattr(tokenizer, "chars", "")
    ids = [i for i, c in enumerate(chars) if c.isspace()] + list(range(len(chars), v))
    return np.asarray(ids, dtype=np.int64)


class RepeatGuard:
    """The history of each row and what the options make of it: ``adjust(logits)`` lowers the
    logits of tokens seen in the last ``repeat_window`` tokens by log(``repetition_penalty``)
    and bans tokens that would repeat an n-gram of ``no_repeat_ngram`` tokens; ``push(ids)``
    appends the drawn ids. Exempt ids are never touched; a row whose every token would be
    banned keeps its logits. One guard per request: rows are independent."""

    def __init__(self, options: SamplingOptions, vocab: int, prompt: np.ndarray, exempt=()):
        self.options = options
        self.free = np.zeros(vocab, dtype=bool)
        self.free[np.asarray(exempt, dtype=np.int64)] = True
        self.log_penalty = math.log(options.repetition_penalty)
        self.n = int(options.no_repeat_ngram or 0)
        self.history: list[list[int]] = []
        self.seen: list[dict[tuple, set]] = []  # per row: the (n-1) tokens before -> tokens that followed
        for row in np.asarray(prompt, dtype=np.int64).reshape(len(prompt), -1):
            self.history.append([])
            self.seen.append({})
            for i in row.tolist():
                self._append(len(self.history) - 1, i)

    def _append(self, r: int, i: int) -> None:
        h = self.history[r]
        h.append(i)
        if self.n and len(h) >= self.n:
            self.seen[r].setdefault(tuple(h[len(h) - self.n:-1]), set()).add(i)

    def push(self, ids: np.ndarray) -> None:
        for r, i in enumerate(np.asarray(ids).tolist()):
            self._append(r, i)

    def adjust(self, logits: np.ndarray) -> np.ndarray:
        z = np.array(logits, dtype=np.float64, copy=True)
        w = self.options.repeat_window
        for r, h in enumerate(self.history):
            if self.log_penalty and h:
                recent = np.zeros(z.shape[1], dtype=bool)
                recent[h[-w:]] = True
                z[r, recent & ~self.free] -= self.log_penalty
            if self.n and len(h) >= self.n - 1:
                banned = self.seen[r].get(tuple(h[len(h) - self.n + 1:]) if self.n > 1 else ())
                if banned:
                    mask = np.zeros(z.shape[1], dtype=bool)
                    mask[list(banned)] = True
                    mask &= ~self.free
                    if np.isfinite(z[r, ~mask]).any():
                        z[r, mask] = -np.inf
        return z



def _draw_one(logits: np.ndarray, temperature: float, rng: np.random.Generator, banned=()) -> np.ndarray:
    """``pick`` for one row with the temperature alone, in a third of the numpy calls of
    ``filtered_probs`` and ``_draw``: the cumulative mass is left unnormalized (the draw compares
    against ``u`` times its total), which can differ from them only where two sums round apart."""
    z = logits[0].astype(np.float64)
    if len(banned):
        z[list(banned)] = -np.inf
    c = np.cumsum(np.exp((z - z.max()) / temperature))
    i = int(c.searchsorted(rng.random() * c[-1], "right"))
    if i >= len(c):  # u * total rounded up to the total: the last id with mass
        i = len(c) - 1 - int((np.diff(c, prepend=0.0)[::-1] > 0).argmax())
    return np.array([i], dtype=np.int64)


def pick(logits: np.ndarray, options: SamplingOptions, rng: np.random.Generator,
         guard: RepeatGuard | None = None, banned=(), allowed: np.ndarray | None = None) -> np.ndarray:
    """The next id of each row of ``logits`` (B, V) under one request's options: ``banned`` ids
    never, only ``allowed`` ones ((B, V) bool, a grammar's mask) when given, the guard's history
    (``RepeatGuard``, rows in the same order), then the temperature and the filters. The one
    rule of every loop (a server's batched step calls it per request). A row whose allowed
    tokens are all banned keeps the allowed ones (the grammar wins)."""
    if guard is None and allowed is None and logits.shape[0] == 1 and options.temperature_only:
        return _draw_one(logits, options.temperature, rng, banned)
    z = logits
    if len(banned) or allowed is not None:
        z = np.array(z, dtype=np.float32, copy=True)
        if len(banned):
            z[:, list(banned)] = -np.inf
        if allowed is not None:
            z = np.where(allowed, z, -np.inf)
            empty = ~np.isfinite(z).any(axis=-1)
            if empty.any():
                z[empty] = np.where(allowed[empty], np.asarray(logits, dtype=np.float32)[empty], -np.inf)
    if guard is not None:
        z = guard.adjust(z)
    if options.temperature == 0:
        return np.asarray(z).argmax(axis=-1).astype(np.int64)
    return _draw(filtered_probs(z, options.temperature, options.top_k, options.top_p, options.min_p), rng)


def generate_steps(engine: Engine, prompt: np.ndarray, steps: int, options: SamplingOptions,
                   rng: np.random.Generator | None = None, stop_id: int | None = None,
                   banned: list[int] | tuple[int, ...] = (), exempt=(),
                   logprobs: bool = True, constraint=None) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Yield ((B,) ids, (B,) log-probabilities or None without ``logprobs``), one step at a time,
    after reading ``prompt`` (B, P) once. The log-probability is the model's own (its softmax,
    before the temperature, the filters and the guard), so over a text they sum to minus its loss.

    Each new token costs one ``advance`` of one token (state carried). Rows that produced
    ``stop_id`` keep yielding it; the loop ends early when every row has stopped.
    ``banned`` ids (e.g. the infill sentinels during plain sampling) are never drawn.
    ``constraint`` (``seqgen.tokenizers.grammar.Constraint``: ``read(prompt)``, ``allowed()``
    (B, V) bool, ``push(ids)``) masks what the grammar forbids and forces given tokens.
    """
    options.check()
    prompt = np.asarray(prompt, dtype=np.int64)
    if prompt.ndim != 2 or prompt.shape[1] == 0:
        raise ConfigError("the prompt must hold at least one token")
    rng = rng if rng is not None else np.random.default_rng()
    state = engine.start(prompt.shape[0])
    logits, state = engine.advance(prompt, state)
    guard = RepeatGuard(options, logits.shape[-1], prompt, exempt) if options.guarded else None
    done = np.zeros(prompt.shape[0], dtype=bool)
    rows = np.arange(prompt.shape[0])
    if constraint is not None:
        constraint.read(prompt)
    if guard is None and constraint is None and _drawable(engine, options):
        yield from _drawn(engine, logits, state, steps, options, rng, stop_id, banned, logprobs)
        return
    for i in range(steps):
        nxt = pick(logits, options, rng, guard, banned, constraint.allowed() if constraint is not None else None)
        if constraint is not None:
            constraint.push(nxt)
        if stop_id is not None:
            nxt = np.where(done, stop_id, nxt)
            done |= nxt == stop_id
        yield nxt, (log_softmax(logits)[rows, nxt] if logprobs else None)
        if done.all() or i == steps - 1:
            return
        if guard is not None:
            guard.push(nxt)
        logits, state = engine.advance(nxt[:, None], state)


def _drawable(engine, options: SamplingOptions) -> bool:
    """Whether the engine can draw the ids itself (``draw``: many steps per call, the onnxruntime
    engine's sampling loop) under these options: the temperature alone, not greedy."""
    return getattr(engine, "can_draw", False) and options.temperature_only


DRAW_CHUNKS = (4, 8, 16, 32, 64)  # ids per ``draw`` call, growing: the first ones come soon


def _drawn(engine, logits, state, steps: int, options: SamplingOptions, rng: np.random.Generator,
           stop_id: int | None, banned, logprobs: bool) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """``generate_steps``' loop with the draws made in the engine, a chunk of steps per call. The
    engine is handed the same uniform numbers the loop above would draw, in the same order (one
    per row per step), and draws by the same rule, so the same ids come out; when the loop ends
    (or its reader stops early), ``rng`` is left where the loop above would leave it."""
    b = logits.shape[0]
    bias = np.zeros(logits.shape[-1])
    bias[list(banned)] = -np.inf
    done = np.zeros(b, dtype=bool)
    start = rng.bit_generator.state
    made, chunk, unused = 0, 0, np.zeros((0, b))
    try:
        while made < steps:
            want = min(DRAW_CHUNKS[min(chunk, len(DRAW_CHUNKS) - 1)], steps - made)
            u = np.concatenate([unused, rng.random((want - len(unused), b))]) if want > len(unused) else unused[:want]
            ids, logp, logits, state = engine.draw(logits, state, u, options.temperature, bias)
            unused = u[len(ids):]  # the engine took fewer steps: these numbers come first next time
            chunk += 1
            for k in range(len(ids)):
                nxt = ids[k]
                if stop_id is not None:
                    nxt = np.where(done, stop_id, nxt)
                    done |= nxt == stop_id
                made += 1
                yield nxt, (logp[k] if logprobs else None)
                if done.all() or made == steps:
                    return
    finally:  # drawn ahead: put the generator back, then take the numbers of the steps made
        rng.bit_generator.state = start
        rng.random((made, b))


def generate(engine: Engine, prompt: np.ndarray, steps: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None,
             rng: np.random.Generator | None = None, stop_id: int | None = None,
             banned: list[int] | tuple[int, ...] = (), options: SamplingOptions | None = None,
             exempt=(), constraint=None) -> Iterator[np.ndarray]:
    """``generate_steps`` without the log-probabilities: yields (B,) ids. ``options`` (when
    given) replaces ``temperature``, ``top_k`` and ``top_p``."""
    opts = _options(options, temperature, top_k, top_p)
    prompt = np.asarray(prompt, dtype=np.int64)
    if prompt.ndim != 2 or prompt.shape[1] == 0:
        raise ConfigError("the prompt must hold at least one token")
    for ids, _ in generate_steps(engine, prompt, steps, opts, rng, stop_id, banned, exempt, logprobs=False,
                                 constraint=constraint):
        yield ids


# ---- stop strings -----------------------------------------------------------------------------
def check_stops(stops) -> tuple[str, ...]:
    stops = tuple(stops or ())
    for s in stops:
        if not isinstance(s, str) or not s:
            raise ConfigError(f"a stop string must be non-empty text, got {s!r}")
    return stops


class StopMatcher:
    """Cuts one stream of text before the first stop string. ``push(piece)`` returns the text
    that is now safe to show: a tail that could still grow into a stop string is held back
    until it is known not to be one; ``flush()`` returns it at the end. ``hit`` is the stop
    string that ended the stream (None while none has), ``text`` everything shown."""

    def __init__(self, stops=()):
        self.stops = check_stops(stops)
        self.held = ""
        self.text = ""
        self.hit: str | None = None

    def push(self, piece: str) -> str:
        if self.hit is not None:
            return ""
        buf = self.held + piece
        found = [(buf.find(s), s) for s in self.stops]
        found = [(at, s) for at, s in found if at >= 0]
        if found:
            at, self.hit = min(found, key=lambda x: (x[0], -len(x[1])))
            self.held = ""
            return self._show(buf[:at])
        keep = 0  # the longest tail of buf that begins some stop string
        for s in self.stops:
            for n in range(min(len(s) - 1, len(buf)), keep, -1):
                if buf.endswith(s[:n]):
                    keep = n
                    break
        self.held = buf[len(buf) - keep:] if keep else ""
        return self._show(buf[: len(buf) - keep])

    def flush(self) -> str:
        held, self.held = self.held, ""
        return self._show(held) if self.hit is None else ""

    def _show(self, text: str) -> str:
        self.text += text
        return text


@dataclass
class Completion:
    """One row's result: its text, why it ended (``"stop"``: a stop string or the end of the
    middle; ``"length"``: the token budget), the stop string that ended it, and with
    ``logprobs`` the model's log-probability of each token of ``text``."""

    text: str
    finish_reason: str
    stop: str | None = None
    logprobs: list[float] | None = None
    tokens: int = 0


def run_rows(gen, prompt: np.ndarray, steps: int, options: SamplingOptions, rng: np.random.Generator | None = None,
             stops=(), logprobs: bool = False, on_text: Callable[[int, str], None] | None = None,
             stop_id: int | None = None, banned=()) -> list[Completion]:
    """Decode every row of ``prompt`` (B, P) as text, each until a stop string, ``stop_id`` or
    ``steps`` tokens. ``on_text(row, piece)`` is told each piece of text as soon as it is safe
    (no part of a stop string is ever shown)."""
    tok = gen.tokenizer
    batch = len(prompt)
    matchers = [StopMatcher(stops) for _ in range(batch)]
    pieces: list[list[tuple[str, float]]] = [[] for _ in range(batch)]
    ended = [False] * batch  # by stop_id
    live = np.ones(batch, dtype=bool)

    def show(r: int, text: str) -> None:
        if text and on_text is not None:
            on_text(r, text)

    for ids, lps in generate_steps(gen.engine, prompt, steps, options, rng, stop_id, banned, exempt_ids(tok),
                                   logprobs=logprobs):
        for r in np.flatnonzero(live):
            i = int(ids[r])
            if stop_id is not None and i == stop_id:
                ended[r], live[r] = True, False
                continue
            piece = tok.decode([i])
            pieces[r].append((piece, float(lps[r]) if logprobs else 0.0))
            show(r, matchers[r].push(piece))
            if matchers[r].hit is not None:
                live[r] = False
        if not live.any():
            break
    results = []
    for r, m in enumerate(matchers):
        show(r, m.flush())
        kept, n = [], 0
        for piece, lp in pieces[r]:
            if n + len(piece) > len(m.text):
                break
            n += len(piece)
            kept.append(lp)
        finished = "stop" if m.hit is not None or ended[r] else "length"
        results.append(Completion(m.text, finished, m.hit, kept if logprobs else None, len(kept)))
    return results


# ---- helpers over a Generator (seqgen.engines.base: an engine and its tokenizer) ------------------------------------
def _sentinels(tokenizer) -> tuple[int, ...]:
    return (tokenizer.pre_id, tokenizer.suf_id, tokenizer.mid_id, tokenizer.eot_id)


def complete(gen, prompt_ids: np.ndarray, length: int, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, rng: np.random.Generator | None = None, batch: int = 1,
             options: SamplingOptions | None = None) -> Iterator[np.ndarray]:
    """Continue ``prompt_ids`` (1-D) for ``length`` tokens in ``batch`` rows; yields (batch,) ids."""
    prompt = np.tile(np.asarray(prompt_ids, dtype=np.int64)[None], (batch, 1))
    return generate(gen.engine, prompt, length, temperature, top_k, top_p, rng,
                    banned=_sentinels(gen.tokenizer), options=options, exempt=exempt_ids(gen.tokenizer))


def complete_text(gen, prompt_ids: np.ndarray, length: int, options: SamplingOptions | None = None,
                  rng: np.random.Generator | None = None, batch: int = 1, stops=(), logprobs: bool = False,
                  on_text: Callable[[int, str], None] | None = None) -> list[Completion]:
    """Continue ``prompt_ids`` (1-D) in ``batch`` rows, each for at most ``length`` tokens and
    ending before the first of ``stops``; ``on_text(row, piece)`` streams what is safe to show."""
    options = (options or SamplingOptions()).check()
    stops = check_stops(stops)
    if length < 1:
        raise ConfigError(f"the length must be at least 1 token, got {length}")
    prompt = np.tile(np.asarray(prompt_ids, dtype=np.int64)[None], (batch, 1))
    return run_rows(gen, prompt, length, options, rng, stops, logprobs, on_text, banned=_sentinels(gen.tokenizer))


def require_infill(gen) -> None:
    """Refuse to fill in a middle with a run that never learned to."""
    if not gen.knows_infill:
        raise SeqgenError(
            f"{gen.source} was trained with --objective {gen.objective}, so it cannot fill in a middle; "
            "train with --objective mixed (the default) or infill"
        )


def infill(gen, prefix_ids: np.ndarray, suffix_ids: np.ndarray, max_length: int, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None, rng: np.random.Generator | None = None,
           batch: int = 1, options: SamplingOptions | None = None) -> list[np.ndarray]:
    """Write the middle between a prefix and a suffix (PSM order); one id array per row."""
    require_infill(gen)
    tok = gen.tokenizer
    prompt = infill_prompt(prefix_ids, suffix_ids, FimIds.of(tok))
    rows: list[list[int]] = [[] for _ in range(batch)]
    stopped = np.zeros(batch, dtype=bool)
    banned = (tok.pre_id, tok.suf_id, tok.mid_id)
    for ids in generate(gen.engine, np.tile(prompt[None], (batch, 1)), max_length + 1, temperature, top_k, top_p,
                        rng, stop_id=tok.eot_id, banned=banned, options=options, exempt=exempt_ids(tok)):
        for r in np.flatnonzero(~stopped):
            if ids[r] == tok.eot_id:
                stopped[r] = True
            else:
                rows[r].append(int(ids[r]))
    return [np.asarray(r[:max_length], dtype=np.int64) for r in rows]


def infill_text(gen, prefix_ids: np.ndarray, suffix_ids: np.ndarray, max_length: int,
                options: SamplingOptions | None = None, rng: np.random.Generator | None = None, batch: int = 1,
                stops=(), logprobs: bool = False) -> list[Completion]:
    """The middle of each row as text: it ends where the model closes it (``<eot>``), before
    the first of ``stops`` (both ``finish_reason`` "stop") or after ``max_length`` tokens."""
    require_infill(gen)
    options = (options or SamplingOptions()).check()
    stops = check_stops(stops)
    if max_length < 1:
        raise ConfigError(f"the longest middle must be at least 1 token, got {max_length}")
    tok = gen.tokenizer
    prompt = np.tile(infill_prompt(prefix_ids, suffix_ids, FimIds.of(tok))[None], (batch, 1))
    return run_rows(gen, prompt, max_length, options, rng, stops, logprobs, stop_id=tok.eot_id,
                    banned=(tok.pre_id, tok.suf_id, tok.mid_id))

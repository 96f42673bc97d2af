"""The HTTP side of ``seqgen serve``: a Starlette app that translates the OpenAI completions API
(and ``/v1/compose`` for music runs) into the library's calls. Decoding happens in the
``Batcher``'s worker thread; this module only reads requests, queues rows and writes answers.

Routes: ``POST /v1/completions``, ``GET /v1/models``, ``GET /health``, ``POST /v1/compose``,
``GET /`` (the playground page). Every error is an OpenAI error object with a 4xx status (a
5xx only for a fault of the server itself).
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from seqgen.errors import SeqgenError
from seqgen.objectives import FimIds, infill_prompt
from seqgen.serve.batcher import Batcher, Closed, QueueFull, RowEvent, RowJob
from seqgen.serve.requests import (
    ApiError,
    CompletionRequest,
    completion_request,
    compose_request,
    read_json,
)


@dataclass
class ServeConfig:
    name: str
    max_tokens: int = 4096  # the most one request may ask for
    max_body: int = 1 << 20  # bytes
    max_rows: int = 64
    max_queue: int = 64
    api_key: str | None = None
    retry_after: int = 1  # seconds, on a 503


def _error(e: ApiError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status, headers=e.headers)


class Service:
    """The model, its batcher and the handlers."""

    def __init__(self, gen, config: ServeConfig):
        self.gen, self.config = gen, config
        self.tok = gen.tokenizer
        self.music = gen.tokenizer.kind == "music"
        self.temperature = float((gen.info.get("sampling") or {}).get("temperature") or 1.0)
        self.batcher = Batcher(gen, config.max_rows, config.max_queue)
        self.compose_lock = asyncio.Semaphore(1)
        self.mailbox = _Mailbox()
        self.created = int(time.time())

    # ---- plumbing -------------------------------------------------------------------------
    async def body(self, request: Request) -> dict:
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > self.config.max_body:
            raise ApiError(413, f"the body is {int(size):,} bytes; this server takes at most {self.config.max_body:,}")
        chunks, total = [], 0
        try:
            async for chunk in request.stream():
                total += len(chunk)
                if total > self.config.max_body:
                    raise ApiError(413, f"the body is over {self.config.max_body:,} bytes, the most this server takes")
                chunks.append(chunk)
        except ClientDisconnect:
            raise ApiError(400, "the client went away before sending the whole body") from None
        return read_json(b"".join(chunks))

    def authorize(self, request: Request) -> None:
        key = self.config.api_key
        if key is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {key}".encode()):
            raise ApiError(401, "a valid API key is required: send Authorization: Bearer KEY")

    def guarded(self, handler, auth: bool = True):
        async def endpoint(request: Request) -> Response:
            try:
                if auth:
                    self.authorize(request)
                return await handler(request)
            except ApiError as e:
                return _error(e)
            except SeqgenError as e:
                return _error(ApiError(400, str(e)))
            except Exception as e:  # a fault of the server: one line, and it keeps serving
                first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
                return _error(ApiError(500, f"internal error: {type(e).__name__}: {first}"))
        return endpoint

    # ---- routes ---------------------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "model": self.config.name, **self.batcher.stats()})

    async def models(self, request: Request) -> Response:
        info = self.gen.info
        return JSONResponse({"object": "list", "data": [{
            "id": self.config.name, "object": "model", "created": self.created, "owned_by": "seqgen",
            "tokenizer": self.tok.kind, "vocab_size": self.tok.vocab_size, "window": info.get("window"),
            "model_type": self.gen.model_type, "objective": self.gen.objective, "infill": self.gen.knows_infill,
            "engine": "onnxruntime" if info.get("bundle") else "torch",
        }]})

    def encode(self, text: str, param: str) -> np.ndarray:
        missing = self.tok.unknown(text)
        if missing:
            shown = ", ".join(repr(c) for c in missing[:10])
            more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise ApiError(400, f"{param} holds characters the model never saw: {shown}{more}", param)
        return self.tok.encode(text)

    def jobs(self, req: CompletionRequest, sink_for) -> tuple[list[RowJob], list[int]]:
        """One RowJob per (prompt, n); also the prompt tokens of each prompt."""
        tok = self.tok
        jobs, counts = [], []
        for p, text in enumerate(req.prompts):
            if req.suffix is not None:
                if not self.gen.knows_infill:
                    raise ApiError(400, f"this model was trained with --objective {self.gen.objective}, so it "
                                        "cannot fill in a middle (suffix)", "suffix")
                ids = infill_prompt(self.encode(text, "prompt"), self.encode(req.suffix, "suffix"), FimIds.of(tok))
                stop_id, banned = tok.eot_id, (tok.pre_id, tok.suf_id, tok.mid_id)
            else:
                ids = self.encode(text, "prompt")
                if not len(ids):  # nothing given: start where sampling starts without a prompt
                    ids = tok.encode(tok.default_prompt())
                stop_id, banned = None, (tok.pre_id, tok.suf_id, tok.mid_id, tok.eot_id)
            counts.append(len(ids))
            for j in range(req.n):
                index = p * req.n + j
                seed = None if req.seed is None else (req.seed if j == 0 else [req.seed, j])
                jobs.append(RowJob(ids, req.max_tokens, req.options, np.random.default_rng(seed), sink_for(index),
                                   req.stops, req.logprobs, stop_id, banned))
        return jobs, counts

    async def completions(self, request: Request) -> Response:
        if self.music:
            raise ApiError(400, "this is a music run: its tokens are not text; use POST /v1/compose")
        req = completion_request(await self.body(request), self.config.max_tokens, self.temperature)
        queue: asyncio.Queue = asyncio.Queue()
        self.mailbox.loop = asyncio.get_running_loop()
        post = self.mailbox.post

        def sink_for(index: int):
            return lambda ev: post(queue, (index, ev))

        jobs, counts = self.jobs(req, sink_for)
        try:
            self.batcher.submit(jobs)
        except QueueFull as e:
            raise ApiError(503, f"the server is busy ({e}); try again shortly",
                           headers={"Retry-After": str(self.config.retry_after)}) from None
        except Closed as e:
            raise ApiError(503, str(e), headers={"Retry-After": str(self.config.retry_after)}) from None
        rid = f"cmpl-{uuid.uuid4().hex[:24]}"
        usage_prompt = sum(counts[i // req.n] for i in range(len(jobs)))
        if req.stream:
            return StreamingResponse(self.stream(req, rid, jobs, queue, usage_prompt), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        try:
            choices = await self.collect(req, jobs, queue)
        finally:
            for job in jobs:
                job.cancel()  # ended rows ignore it; a request cut short frees its rows
        done = sum(c.pop("_tokens") for c in choices)
        return JSONResponse({"id": rid, "object": "text_completion", "created": int(time.time()),
                             "model": self.config.name, "choices": choices,
                             "usage": {"prompt_tokens": usage_prompt, "completion_tokens": done,
                                       "total_tokens": usage_prompt + done}})

    async def collect(self, req: CompletionRequest, jobs, queue) -> list[dict]:
        texts = [req.prompts[i // req.n] if req.echo else "" for i in range(len(jobs))]
        lps = [_Logprobs() if req.logprobs is not None else None for _ in jobs]
        ends: dict[int, RowEvent] = {}
        while len(ends) < len(jobs):
            index, ev = await queue.get()
            texts[index] += ev.text
            if lps[index] is not None:
                lps[index].add(ev)
            if ev.finish_reason is not None:
                if ev.error:
                    raise ApiError(500, f"the engine failed: {ev.error}")
                ends[index] = ev
        return [{"text": texts[i], "index": i, "logprobs": lps[i].body() if lps[i] else None,
                 "finish_reason": ends[i].finish_reason, "_tokens": ends[i].completion_tokens}
                for i in range(len(jobs))]

    async def stream(self, req: CompletionRequest, rid: str, jobs, queue, prompt_tokens: int):
        created = int(time.time())

        head = json.dumps({"id": rid, "object": "text_completion", "created": created, "model": self.config.name},
                          ensure_ascii=False)[:-1] + ', "choices": [{"text": '

        def chunk(index: int, text: str, finish=None, logprobs=None) -> bytes:
            # the same JSON as json.dumps of the whole chunk, with one string encoded per token
            return (f"data: {head}{json.dumps(text, ensure_ascii=False)}, \"index\": {index}, \"logprobs\": "
                    f"{json.dumps(logprobs, ensure_ascii=False)}, \"finish_reason\": {json.dumps(finish)}}}]}}\n\n"
                    ).encode()

        ended, tokens = 0, 0
        try:
            if req.echo:
                for i in range(len(jobs)):
                    yield chunk(i, req.prompts[i // req.n])
            while ended < len(jobs):
                batch = [await queue.get()]
                while not queue.empty():  # what piled up goes out in one write
                    batch.append(queue.get_nowait())
                out = []
                for index, ev in batch:
                    ended, tokens = self._event(req, chunk, index, ev, out, ended, tokens)
                if out:
                    yield b"".join(out)
            if req.include_usage:
                usage = {"id": rid, "object": "text_completion", "created": created, "model": self.config.name,
                         "choices": [], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": tokens,
                                                  "total_tokens": prompt_tokens + tokens}}
                yield f"data: {json.dumps(usage)}\n\n".encode()
            yield b"data: [DONE]\n\n"
        finally:
            for job in jobs:
                job.cancel()  # a client that went away frees its rows at the next step

    @staticmethod
    def _event(req, chunk, index: int, ev: RowEvent, out: list[bytes], ended: int, tokens: int) -> tuple[int, int]:
        lp = None
        if req.logprobs is not None:
            lp = _Logprobs()
            lp.add(ev)
            lp = lp.body()
        if ev.finish_reason is not None:
            ended += 1
            tokens += ev.completion_tokens
            if ev.error:
                err = ApiError(500, f"the engine failed: {ev.error}")
                out.append(f"data: {json.dumps(err.body())}\n\n".encode())
                return ended, tokens
        if ev.text or ev.finish_reason is not None:
            out.append(chunk(index, ev.text, ev.finish_reason, lp))
        return ended, tokens

    async def compose(self, request: Request) -> Response:
        req = compose_request(await self.body(request), self.temperature, request.headers.get("accept", ""))
        if not self.music and self.tok.unknown("X:1\nK:|"):
            raise ApiError(400, "this run writes text, not music: compose needs a music run or an ABC text model")
        async with self.compose_lock:  # one at a time beside the batcher; the engine runs in a thread
            piece, midi, wav = await run_in_threadpool(self._compose, req)
        if req.format == "midi":
            return Response(midi, media_type="audio/midi",
                            headers={"Content-Disposition": 'attachment; filename="composition.mid"'})
        body = {"object": "composition", "model": self.config.name, "notes": len(piece),
                "seconds": round(piece.seconds(), 3), "tokens": piece.info.get("tokens"),
                "midi_base64": base64.b64encode(midi).decode()}
        if wav is not None:
            body["wav_base64"] = base64.b64encode(wav).decode()
        return JSONResponse(body)

    def _compose(self, req):
        import tempfile

        from seqgen.compose import compose
        from seqgen.music.files import to_symusic

        wav = None
        soundfont = None
        if req.audio:
            from seqgen.music.audio import find_soundfont

            soundfont = find_soundfont(None)
        piece = compose(self.gen, bars=req.bars if req.length is None else None, length=req.length,
                        rng=np.random.default_rng(req.seed), tempo=req.tempo, options=req.options,
                        temperature=req.options.temperature, top_k=req.options.top_k, top_p=req.options.top_p)
        midi = to_symusic(piece).dumps_midi()
        if soundfont is not None:
            from seqgen.music.audio import render_wav

            with tempfile.TemporaryDirectory(prefix="seqgen-serve-") as tmp:
                wav = render_wav(piece, Path(tmp) / "c.wav", soundfont).read_bytes()
        return piece, midi, wav

    async def playground(self, request: Request) -> Response:
        from seqgen.serve.page import page

        return HTMLResponse(page(self.config.name, self.music, self.gen.knows_infill))


class _Mailbox:
    """Events from the worker thread to the event loop's queues: one wake-up of the loop carries
    everything posted since the last one (a step of 64 rows is one wake-up, not 64), and
    wake-ups come at most every ``interval`` seconds (a lone fast stream then sends a few tokens
    per write instead of paying the loop's cost for each; the first token goes at once). Text
    events of one row that pile up between two wake-ups are merged into one, so the loop writes,
    and the client reads, one chunk per row per wake-up however many tokens it holds."""

    def __init__(self, interval: float = 1e-3):
        self.loop = None  # the server's loop, set by the first request
        self.items: list = []
        self.open: dict[tuple[int, int], RowEvent] = {}  # (queue, index) -> its event still open to merging
        self.lock = threading.Lock()
        self.scheduled = False
        self.interval = interval
        self.last = 0.0

    def post(self, queue: asyncio.Queue, item) -> None:
        index, ev = item
        key = (id(queue), index)
        with self.lock:
            held = self.open.get(key)
            if held is not None and ev.error is None:
                _merge(held, ev)
                if ev.finish_reason is not None:
                    del self.open[key]
                return
            if ev.finish_reason is None:
                ev = _copy(ev)  # merged into later: the poster's object stays as it was
                self.open[key] = ev
            self.items.append((queue, (index, ev)))
            if self.scheduled:
                return
            self.scheduled = True
        self.loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        wait = self.last + self.interval - self.loop.time()
        if wait > 0:
            self.loop.call_later(wait, self._flush)
        else:
            self._flush()

    def _flush(self) -> None:
        self.last = self.loop.time()
        with self.lock:
            items, self.items, self.scheduled = self.items, [], False
            self.open.clear()
        for queue, item in items:
            queue.put_nowait(item)


def _copy(ev: RowEvent) -> RowEvent:
    return RowEvent(ev.text, list(ev.tokens), list(ev.logprobs), list(ev.top), ev.finish_reason,
                    ev.completion_tokens, ev.error)


def _merge(into: RowEvent, ev: RowEvent) -> None:
    """``ev`` appended to ``into``: its text and tokens after, its end (if any) becomes the end."""
    into.text += ev.text
    into.tokens.extend(ev.tokens)
    into.logprobs.extend(ev.logprobs)
    into.top.extend(ev.top)
    if ev.finish_reason is not None:
        into.finish_reason, into.completion_tokens = ev.finish_reason, ev.completion_tokens


class _Logprobs:
    """The OpenAI ``logprobs`` object of one choice, built up from its events."""

    def __init__(self):
        self.tokens, self.lps, self.top, self.offsets = [], [], [], []
        self.at = 0

    def add(self, ev: RowEvent) -> None:
        for t, lp, top in zip(ev.tokens, ev.logprobs, ev.top):
            self.tokens.append(t)
            self.lps.append(lp)
            self.top.append(top or None)
            self.offsets.append(self.at)
            self.at += len(t)

    def body(self) -> dict:
        return {"tokens": self.tokens, "token_logprobs": self.lps,
                "top_logprobs": self.top if any(t is not None for t in self.top) else None,
                "text_offset": self.offsets}


def build_app(gen, config: ServeConfig) -> tuple[Starlette, Service]:
    svc = Service(gen, config)

    async def not_found(request: Request, exc) -> Response:
        status = getattr(exc, "status_code", 404)
        message = "no such route" if status == 404 else "method not allowed" if status == 405 else str(exc)
        return _error(ApiError(status, f"{message}: {request.method} {request.url.path}"))

    routes = [
        Route("/v1/completions", svc.guarded(svc.completions), methods=["POST"]),
        Route("/v1/compose", svc.guarded(svc.compose), methods=["POST"]),
        Route("/v1/models", svc.guarded(svc.models), methods=["GET"]),
        Route("/health", svc.guarded(svc.health, auth=False), methods=["GET"]),
        Route("/", svc.guarded(svc.playground, auth=False), methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
    return app, svc

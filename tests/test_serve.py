"""``seqgen serve`` for real: a server started in a subprocess on a free loopback port, talked to
over HTTP with httpx and the official ``openai`` client."""

from __future__ import annotations

import base64
import json
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from serve_util import start_server
from test_export import make_run
from test_no_torch import music_bundle, text_bundle  # noqa: F401 - fixtures

httpx = pytest.importorskip("httpx", reason="httpx (dev extra) is not installed")
pytest.importorskip("starlette", reason="the serve extra is not installed")
openai = pytest.importorskip("openai", reason="openai (dev extra) is not installed")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(text_bundle):  # noqa: F811
    s = start_server(text_bundle, "--max-tokens", "5000")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def post(server, body, path="/v1/completions", **kw):
    return httpx.post(server.url + path, json=body, timeout=60, **kw)


def library_text(bundle: Path, prompt: str, n: int, seed: int, **kw) -> str:
    """What the library writes for the same request (temperature 1, one row, the same seed)."""
    from seqgen.engines.onnx_engine import open_bundle
    from seqgen.sampling import SamplingOptions, complete_text

    gen = open_bundle(bundle)
    (c,) = complete_text(gen, gen.tokenizer.encode(prompt), n, SamplingOptions(temperature=1.0),
                         np.random.default_rng(seed), **kw)
    return c.text


def test_a_completion_with_the_openai_client_and_usage(server, client, text_bundle):  # noqa: F811
    r = client.completions.create(model="any", prompt="All", max_tokens=20, seed=7)
    assert r.object == "text_completion" and len(r.choices) == 1
    choice = r.choices[0]
    assert choice.finish_reason == "length" and len(choice.text) == 20
    assert r.usage.prompt_tokens == 3 and r.usage.completion_tokens == 20 and r.usage.total_tokens == 23
    # the server draws what the library draws for the same seed
    assert choice.text == library_text(text_bundle, "All", 20, 7)
    models = client.models.list().data
    assert models[0].id == text_bundle.name
    info = httpx.get(server.url + "/v1/models").json()["data"][0]
    assert info["tokenizer"] == "text" and info["vocab_size"] > 20 and info["engine"] == "onnxruntime"
    assert httpx.get(server.url + "/health").json()["status"] == "ok"


def test_events_that_pile_up_between_writes_merge_into_one():
    """The mailbox between the worker thread and the event loop: a row's text events posted before
    the loop wakes become one event (text, tokens and log-probabilities in order, the end kept);
    rows and requests stay apart, and an error event is never merged away."""
    import asyncio

    from seqgen.serve.app import _Mailbox
    from seqgen.serve.batcher import RowEvent

    async def main():
        box, a, b = _Mailbox(), asyncio.Queue(), asyncio.Queue()
        box.loop = asyncio.get_running_loop()
        for piece in "abc":
            box.post(a, (0, RowEvent(text=piece, tokens=[piece], logprobs=[-1.0])))
        box.post(a, (1, RowEvent(text="x")))
        box.post(b, (0, RowEvent(text="y")))
        box.post(a, (0, RowEvent(text="d", tokens=["d"], logprobs=[-2.0], finish_reason="length",
                                 completion_tokens=4)))
        box.post(b, (0, RowEvent(error="boom", finish_reason="error")))
        await asyncio.sleep(0.05)
        return [a.get_nowait() for _ in range(a.qsize())], [b.get_nowait() for _ in range(b.qsize())]

    got_a, got_b = asyncio.run(main())
    assert [(i, e.text, e.finish_reason) for i, e in got_a] == [(0, "abcd", "length"), (1, "x", None)]
    merged = got_a[0][1]
    assert merged.tokens == list("abcd") and merged.logprobs == [-1.0] * 3 + [-2.0] and merged.completion_tokens == 4
    assert [(e.text, e.error) for _, e in got_b] == [("y", None), ("", "boom")]


def test_a_stream_ends_with_done_and_matches_the_whole_answer(server, client):
    whole = client.completions.create(model="m", prompt="All", max_tokens=300, seed=3).choices[0].text
    parts, reasons = [], []
    for chunk in client.completions.create(model="m", prompt="All", max_tokens=300, seed=3, stream=True):
        parts.append(chunk.choices[0].text)
        reasons.append(chunk.choices[0].finish_reason)
    # tokens that pile up between two writes go out as one chunk, so a fast model may send one
    assert "".join(parts) == whole and len(whole) == 300
    assert reasons[-1] == "length" and set(reasons[:-1]) <= {None}
    with httpx.stream("POST", server.url + "/v1/completions", timeout=60,
                      json={"prompt": "All", "max_tokens": 5, "stream": True,
                            "stream_options": {"include_usage": True}}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    usage = json.loads(lines[-2][len("data: "):])["usage"]
    assert usage["completion_tokens"] == 5 and usage["prompt_tokens"] == 3


def test_stop_strings_n_and_seeds(server, client):
    base = client.completions.create(model="m", prompt="All", max_tokens=60, seed=11).choices[0].text
    stop = base[20:23]
    cut = client.completions.create(model="m", prompt="All", max_tokens=60, seed=11, stop=[stop, "never-there"])
    assert cut.choices[0].text == base[: base.index(stop)] and cut.choices[0].finish_reason == "stop"
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="m", prompt="All", max_tokens=60, seed=11, stop=stop, stream=True))
    assert streamed == cut.choices[0].text  # no part of the stop string leaks into the stream
    many = client.completions.create(model="m", prompt=["All", "First"], max_tokens=15, n=3, seed=5)
    assert sorted(c.index for c in many.choices) == list(range(6))
    assert len({c.text for c in many.choices}) > 1  # rows of one request draw differently
    again = client.completions.create(model="m", prompt=["All", "First"], max_tokens=15, n=3, seed=5)
    assert [c.text for c in again.choices] == [c.text for c in many.choices]
    assert many.usage.completion_tokens == 6 * 15 and many.usage.prompt_tokens == 3 * 3 + 3 * 5


def test_concurrent_streams_each_get_the_answer_they_would_get_alone(server):
    alone = {s: post(server, {"prompt": "All", "max_tokens": 120, "seed": s}).json()["choices"][0]["text"]
             for s in range(6)}
    got = {}

    def ask(s):
        got[s] = post(server, {"prompt": "All", "max_tokens": 120, "seed": s, "min_p": 0.0})\
            .json()["choices"][0]["text"]

    threads = [threading.Thread(target=ask, args=(s,)) for s in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert got == alone


def test_logprobs_and_the_repetition_extras(server):
    r = post(server, {"prompt": "All", "max_tokens": 30, "seed": 2, "logprobs": 2, "top_k": 5, "min_p": 0.05,
                      "repetition_penalty": 1.3, "repeat_last_n": 16, "no_repeat_ngram": 4}).json()
    lp = r["choices"][0]["logprobs"]
    assert "".join(lp["tokens"]) == r["choices"][0]["text"]
    assert len(lp["token_logprobs"]) == 30 and all(v <= 0 for v in lp["token_logprobs"])
    assert all(len(top) == 2 for top in lp["top_logprobs"]) and lp["text_offset"][:3] == [0, 1, 2]


def test_infill_through_suffix_matches_the_library(server, client, text_bundle):  # noqa: F811
    from seqgen.engines.onnx_engine import open_bundle
    from seqgen.sampling import SamplingOptions, infill_text

    r = client.completions.create(model="m", prompt="First Citizen:\nBefore we", suffix=" speak.", max_tokens=40,
                                  seed=4)
    gen = open_bundle(text_bundle)
    tok = gen.tokenizer
    (want,) = infill_text(gen, tok.encode("First Citizen:\nBefore we"), tok.encode(" speak."), 40,
                          SamplingOptions(temperature=1.0), np.random.default_rng(4))
    assert r.choices[0].text == want.text and r.choices[0].finish_reason == want.finish_reason


@pytest.mark.parametrize("body,field", [
    ({"prompt": "All", "max_tokens": "ten"}, "max_tokens"),
    ({"prompt": 12}, "prompt"),
    ({"prompt": "All", "temperature": -1}, "temperature"),
    ({"prompt": "All", "top_p": 1.5}, "top_p"),
    ({"prompt": "All", "n": 0}, "n"),
    ({"prompt": "All", "stream": "yes"}, "stream"),
    ({"prompt": "All", "stop": ""}, "stop"),
    ({"prompt": "All", "min_p": 2}, "min_p"),
    ({"prompt": "All", "repetition_penalty": 0.5}, "repetition_penalty"),
    ({"prompt": "All", "max_tokens": 5001}, "max_tokens"),
    ({"prompt": "All", "temprature": 0.5}, "temprature"),
    ({"prompt": "All €✓"}, "prompt"),
], ids=["type", "prompt-type", "temperature", "top-p", "n", "stream", "empty-stop", "min-p", "penalty",
        "over-limit", "unknown-field", "out-of-vocabulary"])
def test_bad_requests_are_400_error_objects(server, body, field):
    r = post(server, body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    assert error["param"] == field or field in error["message"]
    if field == "prompt" and isinstance(body["prompt"], str):
        assert "'€'" in error["message"] and "'✓'" in error["message"]  # the characters are named
    assert httpx.get(server.url + "/health").status_code == 200


def test_malformed_json_a_huge_body_and_the_openai_client_error(server, client):
    r = httpx.post(server.url + "/v1/completions", content=b'{"prompt": "All", ', timeout=30,
                   headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    r = httpx.post(server.url + "/v1/completions", content=b"[1, 2]", timeout=30)
    assert r.status_code == 400
    huge = json.dumps({"prompt": "A" * (2 << 20)}).encode()
    r = httpx.post(server.url + "/v1/completions", content=huge, timeout=30)
    assert r.status_code == 413 and r.json()["error"]["message"]

    def chunks():  # no Content-Length: the limit holds while reading
        for _ in range(40):
            yield b" " * 65536

    r = httpx.post(server.url + "/v1/completions", content=chunks(), timeout=30)
    assert r.status_code == 413
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="m", prompt="All", max_tokens=10, temperature=-3)
    assert caught.value.status_code == 400
    assert httpx.get(server.url + "/nowhere").status_code == 404
    assert post(server, {"prompt": "All", "max_tokens": 3}).status_code == 200


def _first_chunk_then_close(server, body) -> None:
    with httpx.stream("POST", server.url + "/v1/completions", json=body, timeout=60) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                break


def _active(server) -> int:
    return httpx.get(server.url + "/health").json()["active"]


def test_a_client_that_goes_away_frees_its_row(server):
    _first_chunk_then_close(server, {"prompt": "All", "max_tokens": 5000, "stream": True})
    end = time.monotonic() + 10
    while _active(server) and time.monotonic() < end:
        time.sleep(0.05)
    assert _active(server) == 0  # long before its 5000 tokens would have been written
    assert post(server, {"prompt": "All", "max_tokens": 3}).status_code == 200


def test_the_queue_limit_answers_503_with_retry_after(text_bundle):  # noqa: F811
    s = start_server(text_bundle, "--max-rows", "1", "--max-queue", "1", "--max-tokens", "100000")
    try:
        holders = []
        for _ in range(2):  # one row decodes, one waits
            holders.append(httpx.stream("POST", s.url + "/v1/completions", timeout=60,
                                        json={"prompt": "All", "max_tokens": 100000, "stream": True}))
        opened = [h.__enter__() for h in holders]
        end = time.monotonic() + 10
        while httpx.get(s.url + "/health").json()["waiting"] < 1 and time.monotonic() < end:
            time.sleep(0.05)
        r = httpx.post(s.url + "/v1/completions", json={"prompt": "All", "max_tokens": 3}, timeout=30)
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
        assert r.json()["error"]["message"]
        for h in holders:
            h.__exit__(None, None, None)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            r = httpx.post(s.url + "/v1/completions", json={"prompt": "All", "max_tokens": 3}, timeout=30)
            if r.status_code == 200:
                break
            time.sleep(0.1)
        assert r.status_code == 200 and opened
    finally:
        s.stop()


def test_the_api_key(text_bundle):  # noqa: F811
    s = start_server(text_bundle, env={"SEQGEN_API_KEY": "s3cret"})
    try:
        r = httpx.post(s.url + "/v1/completions", json={"prompt": "All"}, timeout=30)
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        r = httpx.get(s.url + "/v1/models", headers={"Authorization": "Bearer wrong"}, timeout=30)
        assert r.status_code == 401
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=s.url + "/v1", api_key="wrong", max_retries=0).completions.create(
                model="m", prompt="All")
        ok = openai.OpenAI(base_url=s.url + "/v1", api_key="s3cret", max_retries=0)
        assert len(ok.completions.create(model="m", prompt="All", max_tokens=4).choices[0].text) == 4
        assert httpx.get(s.url + "/health").status_code == 200  # health stays open for probes
    finally:
        s.stop()


def test_sigterm_lets_a_running_stream_finish_and_exits_0(text_bundle):  # noqa: F811
    s = start_server(text_bundle, "--max-tokens", "100000", "--grace", "30")
    lines: list[str] = []
    started = threading.Event()

    def read():
        with httpx.stream("POST", s.url + "/v1/completions", timeout=60,
                          json={"prompt": "All", "max_tokens": 3000, "stream": True, "seed": 1}) as r:
            for line in r.iter_lines():
                if line:
                    lines.append(line)
                    started.set()

    t = threading.Thread(target=read)
    t.start()
    assert started.wait(30)
    s.proc.send_signal(signal.SIGTERM)
    t.join(60)
    assert s.proc.wait(timeout=60) == 0, s.stderr()[-2000:]
    assert lines[-1] == "data: [DONE]"
    text = "".join(json.loads(line[6:])["choices"][0]["text"] for line in lines[:-1])
    assert len(text) == 3000 and json.loads(lines[-2][6:])["choices"][0]["finish_reason"] == "length"
    with pytest.raises(httpx.HTTPError):
        httpx.get(s.url + "/health", timeout=2)


def test_compose_returns_a_midi_file(music_bundle):  # noqa: F811
    s = start_server(music_bundle)
    try:
        r = httpx.post(s.url + "/v1/compose", json={"bars": 2, "seed": 0, "temperature": 0.9}, timeout=120)
        assert r.status_code == 200, r.text
        body = r.json()
        assert base64.b64decode(body["midi_base64"])[:4] == b"MThd" and body["notes"] >= 0
        r = httpx.post(s.url + "/v1/compose", json={"bars": 2, "seed": 0, "temperature": 0.9}, timeout=120,
                       headers={"Accept": "audio/midi"})
        assert r.headers["content-type"] == "audio/midi" and r.content == base64.b64decode(body["midi_base64"])
        assert httpx.post(s.url + "/v1/compose", json={"bars": "two"}, timeout=30).status_code == 400
        r = httpx.post(s.url + "/v1/completions", json={"prompt": "x"}, timeout=30)
        assert r.status_code == 400 and "compose" in r.json()["error"]["message"]
    finally:
        s.stop()


def served_alone_and_together(target: Path, prompts: list[str], tokens: int) -> list[str]:
    """Each prompt's answer asked alone, then all at once from threads: the answers alone, after
    checking that those asked together are the same."""
    s = start_server(target)
    try:
        alone = [post(s, {"prompt": p, "max_tokens": tokens, "seed": i}).json()["choices"][0]["text"]
                 for i, p in enumerate(prompts)]
        got = [None] * len(prompts)

        def ask(i: int) -> None:
            got[i] = post(s, {"prompt": prompts[i], "max_tokens": tokens, "seed": i}).json()["choices"][0]["text"]

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(prompts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert got == alone and all(len(t) == tokens for t in alone)
        both = post(s, {"prompt": prompts[0], "max_tokens": tokens, "seed": 0, "n": 3}).json()["choices"]
        assert both[0]["text"] == alone[0]
    finally:
        s.stop()
    return alone


def batched_texts(gen, prompts: list[str], tokens: int, seed: int = 0) -> tuple[list[str], int, list[tuple]]:
    """The prompts decoded together by a ``Batcher`` (seeds ``seed``, ``seed`` + 1, ...; the server's banned ids):
    their texts, the most rows one engine call stepped, and the shapes of the prefill calls
    (``advance`` of more than one token)."""
    from seqgen.options import SamplingOptions
    from seqgen.serve.batcher import Batcher, RowJob

    widest, prefills = [], []
    for name in ("advance", "draw"):
        if hasattr(gen.engine, name):
            call = getattr(gen.engine, name)

            def counted(ids, state, *rest, call=call, name=name):
                widest.append(len(ids) if ids.ndim == 2 else ids.shape[0])
                if name == "advance" and ids.shape[1] > 1:
                    prefills.append(ids.shape)
                return call(ids, state, *rest)

            setattr(gen.engine, name, counted)
    batcher = Batcher(gen)
    done = threading.Event()
    texts = [""] * len(prompts)

    def sink(k):
        def take(ev):
            texts[k] += ev.text
            if ev.finish_reason and all(texts):
                done.set()
        return take

    tok = gen.tokenizer
    banned = (tok.pre_id, tok.suf_id, tok.mid_id, tok.eot_id)  # as the server bans them
    batcher.submit([RowJob(np.asarray(tok.encode(p), dtype=np.int64), tokens, SamplingOptions(temperature=1.0),
                           np.random.default_rng(seed + k), sink(k), banned=banned) for k, p in enumerate(prompts)])
    assert done.wait(60)
    batcher.close()
    return texts, max(widest), prefills


@pytest.mark.parametrize("exporter", ["fused", "gqa"])
def test_a_transformer_bundle_serves_concurrent_rows_as_each_alone(tmp_path, exporter):
    """Concurrent requests with prompts of different lengths get what each gets alone, stepped in
    shared calls: the fused graph's caches stacked and padded at the front, the gqa graph's rows
    in one buffer, each at its own length."""
    from conftest import TEXT

    from seqgen.engines.onnx_engine import open_bundle
    from seqgen.export import export_run

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    export_run(make_run(tmp_path, "transformer", corpus), tmp_path / "tb", loss_tokens=0, exporter=exporter)
    prompts = ["All", TEXT[:90], TEXT[:7]]
    alone = served_alone_and_together(tmp_path / "tb", prompts, 40)
    texts, widest, _ = batched_texts(open_bundle(tmp_path / "tb"), prompts, 40)
    assert texts == alone
    assert widest == 3  # one call steps all three rows


@pytest.mark.parametrize("model_type", ["lstm", "transformer"])
def test_a_run_serves_concurrent_rows_as_each_alone(tmp_path, model_type):
    """Served from a run (the torch engine), concurrent requests get what each gets alone; the
    rows of a recurrent model step in one call, a transformer's (its cache grows) row by row."""
    from conftest import TEXT

    from seqgen.engines.torch_engine import open_torch

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    run = make_run(tmp_path, model_type, corpus)
    prompts = ["All", TEXT[:90], TEXT[:7]]
    alone = served_alone_and_together(run, prompts, 30)
    texts, widest, _ = batched_texts(open_torch(run / "best.pt"), prompts, 30)
    assert texts == alone
    assert (widest == 3) == (model_type == "lstm")  # one call steps all three rows


@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_rows_that_join_together_read_prompts_of_one_length_in_one_call(tmp_path, kind):
    """Rows that join at once with prompts of the same length are prefilled by one engine call
    (one of another length by its own), and each still gets what it gets alone."""
    from conftest import TEXT

    from seqgen.engines.onnx_engine import open_bundle
    from seqgen.export import export_run

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    export_run(make_run(tmp_path, kind, corpus), tmp_path / "b", loss_tokens=0)
    prompts = [TEXT[:5], TEXT[10:15], TEXT[:9], TEXT[20:25]]
    alone = [batched_texts(open_bundle(tmp_path / "b"), [p], 24, seed=k)[0][0] for k, p in enumerate(prompts)]
    texts, _, prefills = batched_texts(open_bundle(tmp_path / "b"), prompts, 24)
    assert sorted(prefills) == [(1, 9), (3, 5)]
    assert texts == alone

"""The request bodies the server takes, read and checked: one ``ApiError`` (status, message,
the field) for anything wrong, never an exception of another kind.

``completion_request`` reads an OpenAI completions body (``model, prompt, max_tokens,
temperature, top_p, n, stop, seed, stream, logprobs, suffix, echo, stream_options``, and as
extras ``top_k, min_p, repetition_penalty, repeat_window`` (or llama.cpp's ``repeat_last_n``),
``no_repeat_ngram``); ``compose_request`` the body of ``/v1/compose``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from seqgen.errors import SeqgenError
from seqgen.options import SamplingOptions

DEFAULT_MAX_TOKENS = 16  # OpenAI's default
MAX_N = 16
MAX_STOPS = 16
MAX_PROMPTS = 64
MAX_LOGPROBS = 5


class ApiError(SeqgenError):
    """An HTTP error answered as an OpenAI error object."""

    def __init__(self, status: int, message: str, param: str | None = None, kind: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param = status, message, param
        self.kind = kind or {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                             413: "invalid_request_error", 503: "server_busy"}.get(status, "server_error")
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": None}}


def read_json(raw: bytes) -> dict:
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ApiError(400, f"the body is not valid JSON ({e})") from None
    if not isinstance(body, dict):
        raise ApiError(400, f"the body must be a JSON object, got {type(body).__name__}")
    return body


def _type_name(v: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object",
            type(None): "null"}.get(type(v), type(v).__name__)


class _Fields:
    """Typed reads of a body's fields; each read removes the field, ``leftover`` names the rest."""

    def __init__(self, body: dict):
        self.body = dict(body)

    def _get(self, name: str, default):
        v = self.body.pop(name, None)
        return default if v is None else v

    def number(self, name: str, default, lo: float | None = None, hi: float | None = None):
        v = self._get(name, default)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ApiError(400, f"{name} must be a number, got {_type_name(v)} {json.dumps(v)}", name)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise ApiError(400, f"{name} must be between {lo} and {hi}, got {v}", name)
        return v

    def integer(self, name: str, default, lo: int | None = None, hi: int | None = None):
        v = self._get(name, default)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not v.is_integer()):
            raise ApiError(400, f"{name} must be an integer, got {_type_name(v)} {json.dumps(v)}", name)
        v = int(v)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise ApiError(400, f"{name} must be between {lo} and {hi}, got {v}", name)
        return v

    def boolean(self, name: str, default: bool) -> bool:
        v = self._get(name, default)
        if not isinstance(v, bool):
            raise ApiError(400, f"{name} must be true or false, got {_type_name(v)} {json.dumps(v)}", name)
        return v

    def text(self, name: str, default):
        v = self._get(name, default)
        if v is not None and not isinstance(v, str):
            raise ApiError(400, f"{name} must be a string, got {_type_name(v)}", name)
        return v

    def texts(self, name: str, limit: int, allow_empty: bool = True) -> list[str] | None:
        v = self._get(name, None)
        if v is None:
            return None
        items = [v] if isinstance(v, str) else v
        if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
            raise ApiError(400, f"{name} must be a string or an array of strings, got {_type_name(v)}", name)
        if len(items) > limit:
            raise ApiError(400, f"{name} holds {len(items)} strings; at most {limit}", name)
        if not allow_empty and any(not s for s in items):
            raise ApiError(400, f"{name} must not hold an empty string", name)
        return items

    def leftover(self) -> None:
        if self.body:
            names = ", ".join(sorted(self.body))
            raise ApiError(400, f"unknown field(s): {names}", min(self.body))


def sampling(f: _Fields, default_temperature: float) -> SamplingOptions:
    opts = SamplingOptions(
        temperature=f.number("temperature", default_temperature, 0, 100),
        top_k=f.integer("top_k", None, 0),
        top_p=f.number("top_p", None, 0, 1),
        min_p=f.number("min_p", None, 0, 1),
        repetition_penalty=f.number("repetition_penalty", 1.0, 1, 100),
        repeat_window=f.integer("repeat_window", f.integer("repeat_last_n", 64, 1, 100_000), 1, 100_000),
        no_repeat_ngram=f.integer("no_repeat_ngram", None, 0, 1000),
    )
    if opts.top_k == 0:  # llama.cpp's "off"
        opts = SamplingOptions(**{**opts.to_dict(), "top_k": None})
    if opts.top_p == 0:
        raise ApiError(400, "top_p must be above 0", "top_p")
    try:
        return opts.check()
    except SeqgenError as e:
        raise ApiError(400, str(e)) from None


@dataclass
class CompletionRequest:
    prompts: list[str]
    max_tokens: int
    options: SamplingOptions
    n: int = 1
    stops: tuple[str, ...] = ()
    seed: int | None = None
    stream: bool = False
    include_usage: bool = False
    logprobs: int | None = None
    suffix: str | None = None
    echo: bool = False
    model: str | None = None
    extra: dict = field(default_factory=dict)


# accepted for compatibility; only their neutral value is supported
_NEUTRAL = {"presence_penalty": 0, "frequency_penalty": 0, "best_of": 1}


def completion_request(body: dict, max_tokens_limit: int, default_temperature: float = 1.0) -> CompletionRequest:
    f = _Fields(body)
    model = f.text("model", None)
    prompts = f.texts("prompt", MAX_PROMPTS)
    if prompts is None:
        prompts = [""]
    if not prompts:
        raise ApiError(400, "prompt must not be an empty array", "prompt")
    max_tokens = f.integer("max_tokens", DEFAULT_MAX_TOKENS, 1)
    if max_tokens > max_tokens_limit:
        raise ApiError(400, f"max_tokens must be at most {max_tokens_limit} on this server, got {max_tokens}",
                       "max_tokens")
    n = f.integer("n", 1, 1, MAX_N)
    stops = tuple(f.texts("stop", MAX_STOPS, allow_empty=False) or ())
    seed = f.integer("seed", None, 0, 2**64 - 1)
    stream = f.boolean("stream", False)
    stream_options = f._get("stream_options", {})
    if not isinstance(stream_options, dict) or set(stream_options) - {"include_usage"}:
        raise ApiError(400, "stream_options must be an object with include_usage", "stream_options")
    include_usage = _Fields(stream_options).boolean("include_usage", False)
    logprobs = f.integer("logprobs", None, 0, MAX_LOGPROBS)
    suffix = f.text("suffix", None)
    echo = f.boolean("echo", False)
    f.text("user", None)
    for name, neutral in _NEUTRAL.items():
        v = f.number(name, neutral)
        if v != neutral:
            raise ApiError(400, f"{name} is not supported by this server (only {neutral})", name)
    if f._get("logit_bias", None) not in (None, {}):
        raise ApiError(400, "logit_bias is not supported by this server", "logit_bias")
    options = sampling(f, default_temperature)
    f.leftover()
    if suffix is not None and echo:
        raise ApiError(400, "echo cannot be combined with suffix", "echo")
    return CompletionRequest(prompts, max_tokens, options, n, stops, seed, stream, include_usage, logprobs,
                             suffix, echo, model)


@dataclass
class ComposeRequest:
    bars: int | None
    length: int | None
    tempo: float | None
    options: SamplingOptions
    seed: int | None
    format: str  # "json" or "midi"
    audio: bool


def compose_request(body: dict, default_temperature: float = 1.0, accept: str = "") -> ComposeRequest:
    f = _Fields(body)
    f.text("model", None)
    bars = f.integer("bars", None, 1, 256)
    length = f.integer("length", None, 1, 20_000)
    if bars is not None and length is not None:
        raise ApiError(400, "give bars or length, not both", "length")
    tempo = f.number("tempo", None, 10, 400)
    seed = f.integer("seed", None, 0, 2**64 - 1)
    fmt = f.text("format", "midi" if "audio/midi" in accept else "json")
    if fmt not in ("json", "midi"):
        raise ApiError(400, f"format must be json or midi, got {fmt!r}", "format")
    audio = f.boolean("audio", False)
    options = sampling(f, default_temperature)
    f.leftover()
    if bars is None and length is None:
        bars = 16
    return ComposeRequest(bars, length, tempo, options, seed, fmt, audio)

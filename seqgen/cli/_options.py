"""The generation options shared by ``sample``, ``infill`` and ``compose``, declared once: each
command's parameter uses these types, so the flag, its help text and its default live here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from seqgen.device import GENERATE_DEVICE, GENERATE_THREADS
from seqgen.config import DEFAULT_TEMPERATURE
from seqgen.options import DEFAULT_REPEAT_WINDOW, SamplingOptions

DEFAULTS = SamplingOptions()  # the defaults of every sampling option live in the library

RunArg = Annotated[Optional[Path], typer.Argument(
    help="Run folder, checkpoint or ONNX bundle (default: the most recent run).")]
Temp = Annotated[float, typer.Option(
    "--temp", help="Temperature; 0 means greedy (always the most likely token).")]
TopK = Annotated[Optional[int], typer.Option(help="Sample only from the k most likely tokens.")]
TopP = Annotated[Optional[float], typer.Option(
    help="Sample only from the smallest set of tokens whose probability reaches p (nucleus).")]
MinP = Annotated[Optional[float], typer.Option(
    help="Sample only from tokens at least this fraction as likely as the most likely one (0 = off).")]
RepetitionPenalty = Annotated[float, typer.Option(
    help="Divide the probability of each token seen in the last --repeat-window tokens by this "
         "(1 = off; whitespace and structure tokens are exempt).")]
RepeatWindow = Annotated[int, typer.Option(help="Tokens --repetition-penalty looks back over.")]
NoRepeatNgram = Annotated[Optional[int], typer.Option(
    help="Never repeat an n-gram of this many tokens already in the text (0 = off; whitespace exempt).")]
Stop = Annotated[Optional[list[str]], typer.Option(
    "--stop", metavar="<str>", help="End the output before this text (repeatable: the first one found wins; "
                   "\\n, \\t and \\\\ are a newline, a tab and a backslash).")]
Logprobs = Annotated[bool, typer.Option(
    "--logprobs", help="With --json: each token's log-probability under the model (natural log).")]
Seed = Annotated[Optional[int], typer.Option(help="Random seed: the same seed repeats the output.")]
Device = Annotated[str, typer.Option(
    help="auto, cpu, cuda (generation defaults to the CPU: one-token steps gain nothing from a GPU).")]
Threads = Annotated[int, typer.Option(
    help="CPU threads for the engine, torch or onnxruntime (one is fastest for one-token steps).")]



def sampling_options(temp: float, top_k: int | None, top_p: float | None, min_p: float | None,
                     repetition_penalty: float, repeat_window: int, no_repeat_ngram: int | None) -> SamplingOptions:
    """The options of one command line as the library's value, checked (one ConfigError line)."""
    return SamplingOptions(temperature=temp, top_k=top_k, top_p=top_p, min_p=min_p,
                           repetition_penalty=repetition_penalty, repeat_window=repeat_window,
                           no_repeat_ngram=no_repeat_ngram).check()


def unescape(text: str) -> str:
    """``\\n``, ``\\t`` and ``\\\\`` typed in a shell argument as a newline, a tab and a backslash."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in "nt\\":
            out.append({"n": "\n", "t": "\t", "\\": "\\"}[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


__all__ = ["DEFAULTS", "DEFAULT_REPEAT_WINDOW", "DEFAULT_TEMPERATURE", "GENERATE_DEVICE", "GENERATE_THREADS",
           "Device", "Logprobs", "MinP", "NoRepeatNgram", "RepeatWindow", "RepetitionPenalty", "RunArg", "Seed",
           "Stop", "Temp", "Threads", "TopK", "TopP", "sampling_options", "unescape"]

"""The generation options shared by ``sample``, ``infill`` and ``compose``, declared once: each
command's parameter uses these types, so the flag, its help text and its default live here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from seqgen.device import GENERATE_DEVICE, GENERATE_THREADS
from seqgen.config import DEFAULT_TEMPERATURE

RunArg = Annotated[Optional[Path], typer.Argument(
    help="Run folder, checkpoint or ONNX bundle (default: the most recent run).")]
Temp = Annotated[float, typer.Option(
    "--temp", help="Temperature; 0 means greedy (always the most likely token).")]
TopK = Annotated[Optional[int], typer.Option(help="Sample only from the k most likely tokens.")]
TopP = Annotated[Optional[float], typer.Option(
    help="Sample only from the smallest set of tokens whose probability reaches p (nucleus).")]
Seed = Annotated[Optional[int], typer.Option(help="Random seed: the same seed repeats the output.")]
Device = Annotated[str, typer.Option(
    help="auto, cpu, cuda (generation defaults to the CPU: one-token steps gain nothing from a GPU).")]
Threads = Annotated[int, typer.Option(
    help="CPU threads for the engine, torch or onnxruntime (one is fastest for one-token steps).")]

__all__ = ["DEFAULT_TEMPERATURE", "GENERATE_DEVICE", "GENERATE_THREADS", "Device", "RunArg", "Seed", "Temp",
           "Threads", "TopK", "TopP"]

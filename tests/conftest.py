"""Shared fixtures: tiny corpora made here, real corpora found in ../shared (skipped when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SHAKESPEARE = SHARED / "corpora" / "tinyshakespeare.txt"
MUSIC = SHARED / "music"

TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
    "All:\nSpeak, speak.\n\nFirst Citizen:\nYou are all resolved rather to die than to famish?\n\n"
    "All:\nResolved. resolved.\n\n"
) * 40


@pytest.fixture(autouse=True, scope="session")
def _session_env(tmp_path_factory):
    """Every test session gets its own token cache, so nothing leaks between runs, and torch
    uses one thread: tiny models gain nothing from two, and spinning threads slow a busy machine."""
    import torch

    os.environ["SEQGEN_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    yield


@pytest.fixture
def text_corpus(tmp_path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture
def shakespeare() -> Path:
    if not SHAKESPEARE.exists():
        pytest.skip(f"{SHAKESPEARE} is absent (the shared corpora are not on this machine)")
    return SHAKESPEARE


@pytest.fixture
def music_dir() -> Path:
    if not MUSIC.is_dir():
        pytest.skip(f"{MUSIC} is absent (the shared music files are not on this machine)")
    return MUSIC

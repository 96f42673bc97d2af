"""Composing: bar counting, priming, bar infilling, ABC tunes from a character model, the piano
roll and the statistics that `seqgen eval` reports. Tiny models (a few steps), or scripted
engines where the test needs the model to write something particular."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from seqgen.engines.base import Generator
from seqgen.errors import SeqgenError
from seqgen.music.files import read_midi
from seqgen.music.piece import Piece
from seqgen.tokenizers import CharTokenizer
from seqgen.tokenizers.midi import MidiTokenizer

MUSIC = Path(__file__).resolve().parents[1].parent / "shared" / "music"  # as conftest's music_dir


class Scripted:
    """An engine that writes ``script`` over and over (logits peaked on the next id)."""

    def __init__(self, script, vocab: int):
        self.script, self.vocab = list(script), vocab

    def start(self, batch):
        return np.zeros(batch, dtype=np.int64)

    def advance(self, ids, state):
        logits = np.full((len(state), self.vocab), -30.0, dtype=np.float32)
        logits[:, [self.script[int(s) % len(self.script)] for s in state]] = 30.0
        return logits, state + 1


def train_tiny(corpus: Path, out: Path, objective: str = "mixed", steps: int = 6) -> Path:
    from seqgen.config import TrainConfig
    from seqgen.data.load import load_corpus
    from seqgen.train import Trainer

    cfg = TrainConfig(model="lstm", size="tiny", steps=steps, batch=4, window=32, objective=objective, device="cpu",
                      threads=1, transpose=(-2, 2), eval_tokens=256, warmup=2)
    data = load_corpus(str(corpus), report=None, progress=None)
    Trainer(cfg, data, out).run()
    return out


@pytest.fixture(scope="module")
def midi_folder(tmp_path_factory) -> Path:
    if not MUSIC.is_dir():
        pytest.skip(f"{MUSIC} is absent")
    folder = tmp_path_factory.mktemp("midi")
    for name in ("english1.mid", "english2.mid", "english3.mid", "melody.mid"):
        shutil.copy(MUSIC / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def music_run(midi_folder, tmp_path_factory) -> Path:
    return train_tiny(midi_folder, tmp_path_factory.mktemp("runs") / "mixed")


@pytest.fixture(scope="module")
def causal_run(midi_folder, tmp_path_factory) -> Path:
    return train_tiny(midi_folder, tmp_path_factory.mktemp("runs") / "causal", objective="causal", steps=2)


def scripted_gen(tok, script, objective="mixed") -> Generator:
    return Generator(Scripted(script, tok.vocab_size), tok, "scripted", objective, Path("scripted"))


def test_training_transposes_music_batches(midi_folder, tmp_path):
    from seqgen.config import TrainConfig
    from seqgen.data.load import load_corpus
    from seqgen.train import Trainer

    data = load_corpus(str(midi_folder), report=None, progress=None)
    calls = []
    real = data.tokenizer.transpose_batch

    windows = []

    def spy(x, rng, lo, hi, pitch_min, pitch_max, held=None, keep=None):
        before = None if held is None else held.copy()
        y = real(x, rng, lo, hi, pitch_min, pitch_max, held, keep)
        calls.append((lo, hi, int((y != x).sum()), pitch_min, pitch_max))
        windows.append((x, y, before, keep))
        return y

    data.tokenizer.transpose_batch = spy
    cfg = TrainConfig(model="lstm", size="tiny", steps=4, batch=4, window=32, device="cpu", threads=1,
                      transpose=(-4, 5), eval_tokens=64, warmup=1, objective="causal")
    Trainer(cfg, data, tmp_path / "run").run()
    assert len(calls) >= 2 and all(c[:2] == (-4, 5) for c in calls)
    # a stream row that goes on from its last window keeps the interval it had (within a piece)
    p0 = data.tokenizer.offset["Pitch"]
    continued = 0
    for x, y, held, keep in windows[1:]:
        for r in np.flatnonzero(keep):
            pitch = (x[r] >= p0) & (x[r] < p0 + 128)
            first = pitch & (np.cumsum(x[r] == data.tokenizer.bos_id) == 0)  # before a new piece begins
            if first.any() and held[r] != 0:
                assert set((y[r] - x[r])[first].tolist()) == {held[r]}
                continued += 1
    assert continued > 0, "no stream row went on within a piece: a weak test"
    assert sum(c[2] for c in calls) > 0  # some pitches moved
    p0 = data.tokenizer.offset["Pitch"]
    ids = np.asarray(data.tokens)
    used = ids[(ids >= p0) & (ids < p0 + 128)] - p0
    assert all(used.min() <= c[3] < c[4] <= used.max() for c in calls)  # bounds from the training corpus


def test_music_is_transposed_by_default_within_its_pitch_range_and_drums_stay():
    from seqgen.tokenizers.midi import MidiTokenizer

    tok = MidiTokenizer()
    p0, d0 = tok.offset["Pitch"], tok.offset["Drum"]
    rows = np.array([[p0 + 60, d0 + 36, p0 + 64, d0 + 38]] * 400)
    out = tok.transpose_batch(rows, np.random.default_rng(0), -5, 6, 58, 67)
    pitches = out[:, [0, 2]] - p0
    assert pitches.min() >= 58 and pitches.max() <= 67  # never outside the corpus's range
    assert len({int(s) for s in pitches[:, 0] - 60}) > 3  # and several keys are drawn
    assert (out[:, [1, 3]] == rows[:, [1, 3]]).all()  # drum tokens never move


# ---- bars and priming ----------------------------------------------------------------------
def test_compose_writes_exactly_the_bars_asked_for():
    from seqgen.compose import compose

    tok = MidiTokenizer()
    o = tok.offset
    script = [o["Position"] + 0, o["Pitch"] + 60, o["Duration"] + 11,
              o["Position"] + 24, o["Pitch"] + 67, o["Duration"] + 23, tok.bar_id]
    piece = compose(scripted_gen(tok, script), bars=3, temperature=0.0)
    assert piece.info["bars"] == 3 and len(piece) == 6
    assert piece.info["dropped_tokens"] == 0
    assert sorted(set(piece.pitch.tolist())) == [60, 67]
    piece = compose(scripted_gen(tok, script), bars=None, length=8, temperature=0.0)
    assert piece.info["tokens"] == 8


def test_compose_never_ends_a_piece_early():
    from seqgen.compose import sample_bars

    tok = MidiTokenizer()
    # a model that would write EOS at once: EOS and BOS are banned until the bars are written
    script = [tok.eos_id]
    (ids,) = sample_bars(scripted_gen(tok, script), np.array([tok.bos_id]), 2, temperature=0.5,
                         rng=np.random.default_rng(0), max_tokens=50)
    assert tok.eos_id not in ids[1:].tolist() and len(ids) == 51


def test_prime_is_kept_and_continued(music_run, music_dir):
    from seqgen.engines.load import open_generator
    from seqgen.compose import compose

    gen = open_generator(music_run, device="cpu")
    tok = gen.tokenizer
    prime = read_midi(music_dir / "melody.mid")
    piece = compose(gen, bars=2, temperature=1.0, rng=np.random.default_rng(0), prime=prime)
    kept = tok.decode(tok.encode(prime))
    assert kept.note_set() <= piece.note_set()
    assert piece.info["tokens"] > 0 and piece.info["bars"] >= kept.info["bars"]


def test_prime_then_scripted_bars():
    from seqgen.compose import compose

    tok = MidiTokenizer()
    o = tok.offset
    prime = Piece.from_notes([[0, 480, 72], [480, 480, 74]])
    script = [tok.bar_id, o["Position"] + 0, o["Pitch"] + 48, o["Duration"] + 47]
    piece = compose(scripted_gen(tok, script), bars=2, temperature=0.0, prime=prime)
    assert {72, 74} <= set(piece.pitch.tolist()) and (piece.pitch == 48).sum() == 2
    assert piece.info["bars"] == 3  # the prime's bar and two new ones


# ---- infilling bars --------------------------------------------------------------------------
def test_infill_keeps_every_other_bar_exactly(music_run, music_dir):
    from seqgen.engines.load import open_generator
    from seqgen.compose import infill_bars

    gen = open_generator(music_run, device="cpu")
    tok = gen.tokenizer
    source = read_midi(music_dir / "english1.mid")
    original = tok.decode(tok.encode(source))
    lo, hi = original.info["bar_starts"][4], original.info["bar_starts"][8]
    outside = lambda p, tpq=480: {n for n in p.note_set(tpq) if not lo * tpq // 480 <= n[0] < hi * tpq // 480}  # noqa: E731
    for seed in range(3):
        piece = infill_bars(gen, source, 5, 8, temperature=1.0, rng=np.random.default_rng(seed))
        assert outside(piece) == outside(original)
        assert outside(piece, 12) == outside(source, 12)  # and the input file, on the tokenizer's grid
        assert np.array_equal(piece.tempos, original.tempos)
        inside = [n for n in piece.note_set() if lo <= n[0] < hi]
        assert all(lo <= n[0] < hi for n in inside)


def test_infill_with_a_scripted_middle_fills_the_right_bars():
    from seqgen.compose import infill_bars

    tok = MidiTokenizer()
    o = tok.offset
    source = Piece.from_notes([[i * 1920, 1920, 60 + i] for i in range(6)])  # one whole note per 4/4 bar
    # the model writes two bars of a low C and then EOT; bars 3-4 are replaced by them
    script = [tok.bar_id, o["Position"], o["Pitch"] + 36, o["Duration"] + 47] * 2 + [tok.eot_id]
    piece = infill_bars(scripted_gen(tok, script), source, 3, 4, temperature=0.0)
    assert sorted(zip(piece.time.tolist(), piece.pitch.tolist())) == [
        (0, 60), (1920, 61), (3840, 36), (5760, 36), (7680, 64), (9600, 65)]


def test_infill_needs_a_run_that_knows_infill(causal_run, music_dir):
    from seqgen.engines.load import open_generator
    from seqgen.compose import infill_bars

    gen = open_generator(causal_run, device="cpu")
    with pytest.raises(SeqgenError, match="objective causal"):
        infill_bars(gen, read_midi(music_dir / "english1.mid"), 1, 2)


def test_infill_rejects_bars_outside_the_piece():
    from seqgen.compose import infill_bars

    tok = MidiTokenizer()
    source = Piece.from_notes([[0, 1920, 60], [1920, 1920, 62]])
    with pytest.raises(SeqgenError, match="bars 1-2"):
        infill_bars(scripted_gen(tok, [tok.eot_id]), source, 2, 5)


# ---- ABC from a character model ---------------------------------------------------------------
ABC_BODY = "T:Scripted\nM:4/4\nL:1/8\nK:G\nGABc dBAG|FGAB c2A2|G8|]\n\n"


def test_char_model_composes_abc():
    from seqgen.compose import compose

    tok = CharTokenizer.from_chars(set("X:1\n" + ABC_BODY + "zq]"))
    gen = scripted_gen(tok, tok.encode(ABC_BODY).tolist())
    piece = compose(gen, bars=None, temperature=0.0)
    assert len(piece) == 15  # GABc dBAG | FGAB c2A2 | G8
    assert piece.pitch[0] == 67 and piece.info["abc"].startswith("X:1\nT:Scripted")


def test_abc_that_breaks_is_cut_back_to_what_parses():
    from seqgen.compose import parse_abc

    text = "X:1\nK:G\nGABc dBAG|FGAB c2A2|\n(3((([[[:|]{{{ q!!!\n"
    piece, why = parse_abc(text)
    assert piece is not None and len(piece) >= 12, why
    none, why = parse_abc("X:1\nqqq\n")
    assert none is None and why


def test_text_model_without_abc_cannot_compose():
    from seqgen.compose import compose

    tok = CharTokenizer.from_chars("abc ")
    with pytest.raises(SeqgenError, match="ABC"):
        compose(scripted_gen(tok, [0]), bars=4)


# ---- roll and statistics ------------------------------------------------------------------
def test_piano_roll_and_summary(music_dir):
    from rich.console import Console

    from seqgen.cli._render import piano_roll
    from seqgen.music.roll import summary

    tok = MidiTokenizer()
    piece = tok.decode(tok.encode(read_midi(music_dir / "english1.mid")))
    console = Console(width=100, record=True, file=open("/dev/null", "w"))
    console.print(piano_roll(piece, width=80))
    text = console.export_text()
    assert "\u2580" in text or "\u2584" in text or "\u2588" in text
    line = summary(piece)
    assert "148 notes" in line and "24 bars" in line and "G major" in line and "pitch" in line


def test_statistics_tell_silence_and_one_note_from_music():
    from seqgen.data.sources import bach_chorale_paths
    from seqgen.music.files import read_music21
    from seqgen.music.stats import compare, piece_stats

    chorales = [piece_stats(read_music21(p)[0]) for p in bach_chorale_paths()[:4]]
    real, held = chorales[:2], chorales[2:]
    silence = [piece_stats(Piece.from_notes([]))]
    one_note = [piece_stats(Piece.from_notes([[i * 240, 240, 60] for i in range(64)]))]
    near = compare(real, held)["overall"]
    assert compare(silence, held)["overall"] == 1.0
    far = compare(one_note, held)
    assert far["overall"] > near + 0.3 and far["pitch_class"] > 0.5 and far["polyphony"] > 0.5
    assert near < 0.2


def test_eval_reports_music_statistics(music_run):
    from seqgen.evaluate import evaluate_run

    result = evaluate_run(music_run, device="cpu", infill_examples=8)
    music = result["music"]
    assert music["compositions"] == 8 and music["held_out_pieces"] >= 1
    assert 0.0 <= music["distance"]["overall"] <= 1.0
    assert len(music["held_out"]["pitch_class_histogram"]) == 12
    assert result["val_loss"] > 0

"""Stop strings, min-p, the repetition guard, log-probabilities, score and the interactive loop:
the rules on hand-made logits, then each option through the CLI on a tiny model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from seqgen.cli import app
from seqgen.errors import ConfigError
from seqgen.options import SamplingOptions
from seqgen.sampling import RepeatGuard, StopMatcher, filtered_probs, generate_steps, log_softmax

from test_export import make_run

runner = CliRunner()
PROBS = np.array([[0.5, 0.25, 0.15, 0.1]])
LOGITS = np.log(PROBS)


def run(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input)


# ---- min-p ------------------------------------------------------------------------------------
def test_min_p_keeps_what_is_at_least_min_p_times_the_top():
    # threshold 0.3 * 0.5 = 0.15: 0.5, 0.25 and 0.15 stay, renormalized by 0.9
    np.testing.assert_allclose(filtered_probs(LOGITS, 1.0, min_p=0.3), [[0.5 / 0.9, 0.25 / 0.9, 0.15 / 0.9, 0]])
    # threshold 0.25: two stay
    np.testing.assert_allclose(filtered_probs(LOGITS, 1.0, min_p=0.5), [[2 / 3, 1 / 3, 0, 0]])
    # after temperature 0.5 the probabilities go as p^2: .25, .0625, .0225, .01 (sum .345);
    # min-p 0.1 keeps what is >= .025, so .0225 goes although 0.15 >= 0.1 * 0.5 before the temperature
    cold = np.array([0.25, 0.0625, 0, 0]) / 0.3125
    np.testing.assert_allclose(filtered_probs(LOGITS, 0.5, min_p=0.1), [cold])
    np.testing.assert_allclose(filtered_probs(LOGITS, 1.0, min_p=0.0), PROBS)  # 0 is off


@pytest.mark.parametrize("change", [dict(min_p=1.5), dict(min_p=-0.1), dict(min_p=float("nan")),
                                    dict(repetition_penalty=0.5), dict(repetition_penalty=float("inf")),
                                    dict(repeat_window=0), dict(no_repeat_ngram=-1), dict(no_repeat_ngram=2.5)],
                         ids=["minp1.5", "minp-0.1", "minp-nan", "penalty0.5", "penalty-inf", "window0",
                              "ngram-1", "ngram2.5"])
def test_out_of_range_options_raise_one_config_error(change):
    with pytest.raises(ConfigError) as e:
        SamplingOptions(**change).check()
    assert "\n" not in str(e.value)


# ---- the repetition guard ---------------------------------------------------------------------
class PreferLow:
    """Always ranks id 0 first, then 1, 2, ...: greedy decoding repeats 0 forever."""

    vocab = 6

    def start(self, batch):
        return None

    def advance(self, ids, state):
        return np.tile(-np.arange(self.vocab, dtype=np.float64) * 0.1, (ids.shape[0], 1)), state


def greedy(options, steps=12, exempt=()):
    opts = SamplingOptions(temperature=0, **options)
    return [int(i[0]) for i, _ in generate_steps(PreferLow(), np.array([[5]]), steps, opts, exempt=exempt)]


def test_no_repeat_ngram_never_repeats_an_ngram():
    assert greedy({}) == [0] * 12
    out = greedy({"no_repeat_ngram": 2})
    pairs = list(zip([5] + out, out))
    assert len(pairs) == len(set(pairs)), out  # every bigram (prompt included) occurs once
    assert greedy({"no_repeat_ngram": 2}, exempt=[0]) == [0] * 12  # exempt ids are never banned


def test_repetition_penalty_divides_the_probability_of_recent_tokens():
    opts = SamplingOptions(repetition_penalty=2.0, repeat_window=2)
    guard = RepeatGuard(opts, 4, np.array([[0, 3, 1]]), exempt=[3])
    p = np.exp(log_softmax(guard.adjust(LOGITS)))
    # id 0 left the 2-token window, 3 is exempt: only id 1 is halved
    expected = PROBS * np.array([1, 0.5, 1, 1])
    np.testing.assert_allclose(p, expected / expected.sum())
    assert greedy({"repetition_penalty": 1.5})[:2] == [0, 1]  # log 1.5 > 0.1: the seen 0 falls behind 1


def test_logprobs_are_the_models_own():
    opts = SamplingOptions(temperature=0.3, top_k=2, no_repeat_ngram=2)
    for ids, lps in generate_steps(PreferLow(), np.array([[5]]), 4, opts, rng=np.random.default_rng(0)):
        np.testing.assert_allclose(lps, log_softmax(PreferLow().advance(ids[:, None], None)[0])[0, ids])


# ---- stop strings -----------------------------------------------------------------------------
def test_a_stop_string_split_across_chunks_is_held_back_and_never_shown():
    m = StopMatcher(["END"])
    shown = [m.push(p) for p in ["ab", "cE", "N", "Dxyz", "more"]]
    assert shown == ["ab", "c", "", "", ""] and m.hit == "END" and m.text == "abc"
    m = StopMatcher(["END"])  # a partial match that turns out not to be one is shown once it is known
    assert [m.push(p) for p in ["aE", "N", "b"]] + [m.flush()] == ["a", "", "ENb", ""]
    assert m.hit is None and m.text == "aENb"
    m = StopMatcher(["\n\n", "xy"])  # the earliest of several wins
    assert m.push("axy\n\n") == "a" and m.hit == "xy"
    with pytest.raises(ConfigError):
        StopMatcher([""])


# ---- through the CLI --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from conftest import TEXT

    root = tmp_path_factory.mktemp("controls")
    corpus = root / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    return {m: make_run(root, m, corpus) for m in ("lstm", "transformer")}


def sample_json(run_dir, *args):
    r = run("sample", run_dir, "--json", "--no-check-copies", *args)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_stop_ends_the_output_before_the_first_stop_string(runs):
    base = ["--prompt", "All", "--length", 60, "--seed", 4, "--temp", 1.0]
    (free,) = sample_json(runs["lstm"], *base)
    assert free["finish_reason"] == "length" and len(free["text"]) == 60
    stop = free["text"][20:23]  # three characters: streamed one character per chunk
    cut = free["text"][: free["text"].index(stop)]
    (stopped,) = sample_json(runs["lstm"], *base, "--stop", "\x01never", "--stop", stop)
    assert stopped == {"prompt": "All", "text": cut, "finish_reason": "stop", "stop": stop}
    streamed = run("sample", runs["lstm"], *base, "--stop", stop)
    assert streamed.exit_code == 0 and streamed.stdout == "All" + cut + "\n"  # no character of the stop leaks
    (never,) = sample_json(runs["lstm"], *base, "--stop", "QQQQQQ")
    assert never == free
    (long,) = sample_json(runs["lstm"], *base, "--length", 400)
    (line,) = sample_json(runs["lstm"], *base, "--length", 400, "--stop", "\\n")  # typed in a shell as \n
    assert "\n" in long["text"] and line["text"] == long["text"].split("\n")[0]
    r = run("infill", runs["lstm"], "--prefix", "All", "--suffix", "speak", "--json", "--seed", 1, "--stop", "e")
    assert r.exit_code == 0, r.output
    middle = json.loads(r.stdout)
    assert "e" not in middle["middle"] and middle["finish_reason"] in ("stop", "length")


@pytest.mark.parametrize("model_type", ["lstm", "transformer"])
def test_logprobs_sum_to_the_samples_loss_under_score(runs, model_type, tmp_path):
    # a one-character prompt: score predicts every character after the first, the sample's tokens
    (s,) = sample_json(runs[model_type], "--prompt", "A", "--length", 50, "--temp", 1, "--seed", 2, "--logprobs")
    assert len(s["logprobs"]) == len(s["text"]) == 50 and all(lp <= 0 for lp in s["logprobs"])
    f = tmp_path / "sample.txt"
    f.write_text("A" + s["text"], encoding="utf-8")
    r = run("score", runs[model_type], f, "--json")
    assert r.exit_code == 0, r.output
    scored = json.loads(r.stdout)
    assert scored["predicted"] == 50
    assert math.isclose(-sum(s["logprobs"]), scored["nats"], rel_tol=1e-4)
    assert math.isclose(scored["bits_per_char"], scored["nats_per_char"] / math.log(2))
    # filters change what is drawn, not the log-probabilities reported: still the model's own
    (hot,) = sample_json(runs[model_type], "--prompt", "A", "--length", 30, "--temp", 0.7, "--top-k", 5,
                         "--min-p", 0.05, "--seed", 2, "--logprobs")
    f.write_text("A" + hot["text"], encoding="utf-8")
    assert math.isclose(-sum(hot["logprobs"]), json.loads(run("score", runs[model_type], f, "--json").stdout)["nats"],
                        rel_tol=1e-4)


def test_guards_and_min_p_change_the_sample_and_bad_values_are_one_line(runs):
    base = ["--prompt", "All", "--length", 80, "--temp", 0]
    (plain,) = sample_json(runs["lstm"], *base)
    (guarded,) = sample_json(runs["lstm"], *base, "--no-repeat-ngram", 4)
    grams = [guarded["text"][i:i + 4] for i in range(len(guarded["text"]) - 3)]
    repeated = [g for g in grams if grams.count(g) > 1 and not any(c.isspace() for c in g[-1])]
    assert guarded["text"] != plain["text"] and not repeated
    for bad, fragment in [(["--min-p", 2], "min-p"), (["--repetition-penalty", 0.5], "repetition-penalty"),
                          (["--repeat-window", 0], "repeat-window"), (["--no-repeat-ngram", -2], "no-repeat-ngram"),
                          (["--stop", ""], "stop"), (["--logprobs"], "--json")]:
        r = run("sample", runs["lstm"], *base, *bad)
        assert r.exit_code == 1 and "Traceback" not in r.output, r.output
        assert r.stderr.startswith("error:") and fragment in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_score_refuses_unknown_characters_and_short_texts_in_one_line(runs, tmp_path):
    f = tmp_path / "x.txt"
    for text, fragment in [("All \u00e9", "never saw"), ("A", "at least two")]:
        f.write_text(text, encoding="utf-8")
        r = run("score", runs["lstm"], f)
        assert r.exit_code == 1 and r.stderr.startswith("error:") and fragment in r.stderr, r.output


def test_interactive_reads_prompts_and_commands_from_stdin(runs):
    r = run("sample", runs["lstm"], "--prompt", "All", "--length", 20, "--temp", 0)
    greedy_answer = r.stdout[len("All"):-1]
    lines = "All\n/temp 0\n/length 20\n/bogus\n/temp -1\n/min-p 0.1\n/min-p off\nAll\n/help\n"
    r = run("sample", runs["lstm"], "--interactive", "--seed", 1, "--length", 5, input=lines)
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    # 5 characters and a newline, then the greedy 20: /temp and /length took effect
    assert len(r.stdout) == 5 + 1 + 20 + 1 and r.stdout.endswith("\n" + greedy_answer + "\n")
    assert "unknown command /bogus" in r.stderr and "temperature must be" in r.stderr and "/length N" in r.stderr
    r = run("sample", runs["lstm"], "--interactive", "--json")
    assert r.exit_code == 1 and "--interactive" in r.stderr


def test_the_guard_on_music_leaves_the_grammar_alone():
    from seqgen.compose import compose
    from seqgen.engines.base import Generator
    from seqgen.engines.torch_engine import TorchEngine
    from seqgen.models import build_model, make_config
    from seqgen.sampling import exempt_ids
    from seqgen.tokenizers.midi import K, MidiTokenizer

    tok = MidiTokenizer()
    free = set(exempt_ids(tok).tolist())
    kinds = tok.kinds_of(np.arange(tok.vocab_size))
    assert tok.bar_id in free and all(int(i) in free for i in np.flatnonzero(kinds == K["Duration"]))
    assert not free & set(np.flatnonzero((kinds == K["Pitch"]) | (kinds == K["Drum"])).tolist())
    import torch

    torch.manual_seed(0)
    gen = Generator(TorchEngine(build_model(make_config("lstm", tok.vocab_size, "tiny", mid_id=tok.mid_id))), tok,
                    "lstm", "mixed", None)
    plain = compose(gen, bars=6, rng=np.random.default_rng(0), options=SamplingOptions(temperature=1.0))
    once = compose(gen, bars=6, rng=np.random.default_rng(0),
                   options=SamplingOptions(temperature=1.0, no_repeat_ngram=1))  # each pitch at most once
    from seqgen.music.piece import DRUMS

    def notes(piece):  # a Pitch token and a Drum token of the same number are different tokens
        return list(zip(piece.pitch.tolist(), (piece.program == DRUMS).tolist()))

    assert len(set(notes(plain))) < len(plain)
    assert len(once) > 1 and len(set(notes(once))) == len(once)
    assert once.info["bars"] >= 6  # bar lines, positions and durations were never banned


@pytest.mark.parametrize("model_type", ["transformer", "lstm-attn"])
def test_score_from_a_bundle_agrees_with_torch_past_the_window(tmp_path, model_type):
    """300 characters read in chunks of 64 by a transformer that sees 16: the sliding cache of
    the bundle and of torch give the same loss."""
    from conftest import TEXT

    from seqgen.engines.load import open_generator
    from seqgen.export import export_run
    from seqgen.scoring import score_text

    (tmp_path / "c.txt").write_text(TEXT, encoding="utf-8")
    run_dir = make_run(tmp_path, model_type, tmp_path / "c.txt")
    export_run(run_dir, tmp_path / "bundle", loss_tokens=0)
    torch_nats = score_text(open_generator(run_dir), TEXT[:300])["nats"]
    onnx_nats = score_text(open_generator(tmp_path / "bundle"), TEXT[:300])["nats"]
    assert math.isclose(torch_nats, onnx_nats, rel_tol=1e-5)
    # and the chunked reading is the step-by-step one: the sum of a greedy sample's log-probabilities
    (s,) = sample_json(run_dir, "--prompt", "F", "--length", 60, "--temp", 0, "--logprobs")
    assert math.isclose(score_text(open_generator(tmp_path / "bundle"), "F" + s["text"])["nats"],
                        -sum(s["logprobs"]), rel_tol=1e-4)

"""The CLI through Typer's CliRunner: the user's path, end to end, and every bad input."""

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from seqgen import checkpoint as ckpt_io
from seqgen.cli import app

runner = CliRunner()
TINY = ["--size", "tiny", "--window", "32", "--batch", "4", "--quiet"]


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_clean_error(result, *fragments):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
    assert lines and lines[0].startswith("error:"), result.stderr
    for f in fragments:
        assert f in result.stderr, result.stderr


@pytest.fixture
def trained(tmp_path, text_corpus, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run("train", text_corpus, "--steps", 40, "--out", "runs/t", *TINY)
    assert r.exit_code == 0, r.output
    return tmp_path / "runs" / "t"


def test_version_and_help():
    from seqgen import __version__

    r = run("--version")
    assert r.exit_code == 0 and __version__ in r.stdout
    r = run("--help")
    assert r.exit_code == 0 and "train" in r.stdout and "sample" in r.stdout


def test_train_writes_a_complete_run_folder(trained):
    assert {"last.pt", "best.pt", "config.json", "metrics.jsonl"} <= {p.name for p in trained.iterdir()}
    cfg = json.loads((trained / "config.json").read_text())
    assert cfg["train"]["steps"] == 40 and cfg["model"]["type"] == "lstm"
    records = [json.loads(ln) for ln in (trained / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["event"] == "eval"]
    assert evals and all(math.isfinite(r["val_loss"]) for r in evals)
    points = [r for r in records if r["event"] == "train"]  # the training curve between evaluations
    assert len(points) + len(evals) == 40 and all("val_loss" not in r and math.isfinite(r["loss"]) for r in points)
    ckpt = ckpt_io.load(trained / "last.pt")
    assert ckpt.step == 40 and ckpt.tokenizer.encode("Speak")[0] >= 0


def test_sample_streams_text_and_repeats_with_a_seed(trained):
    a = run("sample", trained, "--prompt", "All:", "--length", 50, "--seed", 3, "--temp", 0.8)
    b = run("sample", trained, "--prompt", "All:", "--length", 50, "--seed", 3, "--temp", 0.8)
    assert a.exit_code == 0, a.output
    assert a.stdout == b.stdout and a.stdout.startswith("All:")
    assert len(a.stdout.strip()) >= 50


def test_sample_defaults_to_the_most_recent_run(trained):
    r = run("sample", "--length", 20, "--temp", 0, "--num", 2)
    assert r.exit_code == 0, r.output
    first, second = r.stdout.split("-" * 40)
    assert first.strip() == second.strip()  # greedy: both samples are the same


def test_sample_options_are_accepted(trained):
    r = run("sample", trained, "--temp", 0, "--prompt", "All:", "--length", 30, "--top-k", 40,
            "--top-p", 0.95, "--num", 3, "--seed", 1)
    assert r.exit_code == 0, r.output
    assert r.stdout.count("All:") == 3


def test_eval_json_has_the_keys_scripts_rely_on(trained):
    r = run("eval", trained, "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    for key in ("val_loss", "val_bits_per_token", "tokens", "step", "val_loss_windowed", "infill_loss"):
        assert key in d
    assert d["val_bits_per_token"] == pytest.approx(d["val_loss"] / math.log(2))
    assert d["step"] == 40 and d["tokens"] > 0


def test_eval_reports_the_progress_of_each_loss(trained):
    from seqgen.evaluate import evaluate_run

    seen: dict[str, tuple[int, int]] = {}
    result = evaluate_run(
        trained, device="cpu", infill_examples=64, progress=lambda t, d, n: seen.__setitem__(t, (d, n))
    )
    losses = {t: v for t, v in seen.items() if "loss" in t}
    assert set(losses) == {"loss, state carried", "loss, state reset every 2048 tokens", "loss, 64-token windows",
                           "infill loss"}
    assert all(done == total > 0 for done, total in losses.values())  # each ran to its end
    assert losses["infill loss"] == (64, 64) and result["tokens"] > 0


def test_eval_notes_a_drifting_state_only_when_carrying_it_hurts(trained, monkeypatch):
    import seqgen.evaluate

    real = seqgen.evaluate.evaluate_run
    for val_loss, noted in ((1.4, False), (1.6, True)):
        fake = {"model": "lstm", "val_loss": val_loss, "val_loss_windowed": 1.5}
        monkeypatch.setattr(seqgen.evaluate, "evaluate_run", lambda *a, f=fake, **k: {**real(*a, **k), **f})
        r = run("eval", trained, "--json")
        assert r.exit_code == 0 and ("drifts over long texts" in r.stderr) == noted, r.stderr
        assert json.loads(r.stdout)["val_loss"] == val_loss


def test_infill_prints_json(trained):
    r = run("infill", trained, "--prefix", "First ", "--suffix", " Citizen", "--json", "--seed", 0, "--max-length", 20)
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["prefix"] == "First " and d["suffix"] == " Citizen" and len(d["middle"]) <= 20


def test_infill_refuses_a_causal_run(tmp_path, text_corpus, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run("train", text_corpus, "--steps", 5, "--objective", "causal", "--out", "c", *TINY).exit_code == 0
    assert_clean_error(run("infill", "c", "--prefix", "a", "--suffix", "b"), "objective causal")


def test_resume_continues_the_step_count(trained, text_corpus):
    r = run("train", text_corpus, "--out", trained, "--resume", "--steps", 60, "--quiet")
    assert r.exit_code == 0, r.output
    assert ckpt_io.load(trained / "last.pt").step == 60
    r = run("train", text_corpus, "--out", trained, "--steps", 60, "--quiet")
    assert_clean_error(r, "already holds a run")


def test_corpus_list_names_the_builtins():
    r = run("corpus", "list")
    assert r.exit_code == 0 and "folk-abc" in r.stdout and "non-commercial" in r.stdout


# ---- bad input: one line, exit 1, no traceback, nothing half-written -----------------------
def test_missing_corpus(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_clean_error(run("train", "nope.txt", "--steps", 1), "nope.txt")
    assert not (tmp_path / "runs").exists()


def test_empty_corpus(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "e.txt").write_text("")
    assert_clean_error(run("train", "e.txt", "--steps", 1), "empty")


def test_binary_corpus(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "b.txt").write_bytes(bytes(range(256)) * 10)
    assert_clean_error(run("train", "b.txt", "--steps", 1), "binary")


def test_non_utf8_corpus_names_the_offset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "l.txt").write_bytes(("hello world " * 50).encode() + "café".encode("latin-1") + b" more" * 50)
    r = run("train", "l.txt", "--steps", 1)
    assert_clean_error(r, "offset 603", "--encoding")
    r = run("train", "l.txt", "--steps", 2, "--encoding", "latin-1", *TINY)
    assert r.exit_code == 0, r.output


def test_corpus_shorter_than_a_window(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.txt").write_text("short text\n")
    assert_clean_error(run("train", "s.txt", "--steps", 1), "too short")


def test_prompt_with_unseen_characters(trained):
    assert_clean_error(run("sample", trained, "--prompt", "Zebra ♪"), "'♪'")


def test_corrupt_and_truncated_checkpoints(trained, tmp_path):
    data = (trained / "best.pt").read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    assert_clean_error(run("sample", tmp_path / "trunc.pt"), "corrupt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all" * 10)
    assert_clean_error(run("sample", tmp_path / "junk.pt"), "corrupt")


def test_checkpoint_from_a_newer_format(trained, tmp_path):
    payload = torch.load(trained / "best.pt", weights_only=True)
    payload["format"] = ckpt_io.FORMAT + 1
    torch.save(payload, tmp_path / "new.pt")
    assert_clean_error(run("sample", tmp_path / "new.pt"), "upgrade seqgen")


@pytest.mark.parametrize("opts,fragment", [(["--temp", "-1"], "temperature"), (["--top-p", "1.5"], "top-p"),
                                           (["--top-k", "0"], "top-k")], ids=["temp", "top-p", "top-k"])
def test_bad_sampling_options(trained, opts, fragment):
    assert_clean_error(run("sample", trained, *opts), fragment)


def test_run_folder_that_does_not_exist(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_clean_error(run("sample", "runs/ghost"), "does not exist")
    assert_clean_error(run("eval", "runs/ghost"), "does not exist")
    assert_clean_error(run("sample"), "no runs found")


def test_bad_option_value_exits_2(text_corpus):
    r = run("train", text_corpus, "--steps", "many")
    assert r.exit_code == 2


def test_bad_config_values_are_one_line(text_corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_clean_error(run("train", text_corpus, "--model", "mamba", "--steps", 1), "model must be one of")
    assert_clean_error(run("train", text_corpus, "--time", "soon"), "duration")
    assert_clean_error(run("train", text_corpus, "--val-fraction", "0.9", "--steps", 1), "val-fraction")


def test_resume_of_a_finished_run_asks_for_more(trained, text_corpus):
    assert_clean_error(run("train", text_corpus, "--out", trained, "--resume", "--quiet"), "already reached")


def test_help_path_loads_neither_torch_nor_music21():
    import subprocess
    import sys

    code = ("import sys\nfrom typer.testing import CliRunner\nfrom seqgen.cli import app\n"
            "r = CliRunner().invoke(app, ['--help'])\nassert r.exit_code == 0\n"
            "r = CliRunner().invoke(app, ['train', '--help'])\nassert r.exit_code == 0\n"
            "print(sorted(m for m in ('torch', 'music21', 'onnxruntime', 'miditok') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_eval_on_a_tiny_validation_split_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    corpus = tmp_path / "small.txt"
    corpus.write_text("a short text that leaves only a few validation characters. " * 12)
    r = run("train", corpus, "--steps", 2, "--out", "runs/s", "--size", "tiny", "--window", "16", "--batch", "2",
            "--val-fraction", "0.05", "--quiet")
    assert r.exit_code == 0, r.output
    assert_clean_error(run("eval", "runs/s"), "validation split has", "--val-fraction")


def test_an_unexpected_error_is_one_line_that_says_it_is_a_bug(trained, monkeypatch):
    import seqgen.evaluate

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero deep inside")

    monkeypatch.setattr(seqgen.evaluate, "evaluate_run", broken)
    r = run("eval", trained)
    assert r.exit_code == 1 and "Traceback" not in r.output
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) <= 3 and "bug" in r.stderr and "--debug" in r.stderr and "ZeroDivisionError" in r.stderr
    debug = run("--debug", "eval", trained)
    assert isinstance(debug.exception, ZeroDivisionError)  # --debug lets the traceback through
    monkeypatch.setenv("SEQGEN_DEBUG", "1")
    assert isinstance(run("eval", trained).exception, ZeroDivisionError)


def test_a_checkpoint_with_a_pickled_object_is_refused_as_such(trained, tmp_path):
    payload = torch.load(trained / "last.pt", weights_only=True)
    payload["extra"] = {"hook": math.dist}  # any object beyond tensors and plain data
    torch.save(payload, tmp_path / "evil.pt")
    assert_clean_error(run("sample", tmp_path / "evil.pt"), "objects other than tensors", "could run code")


def test_generation_options_are_declared_once():
    """sample, infill and compose share each generation option: one flag, help text and default."""
    import inspect

    from seqgen.cli import compose, infill, sample
    from seqgen.config import DEFAULT_TEMPERATURE

    commands = [sample.sample, infill.infill, compose.compose]
    for name in ("temp", "top_k", "top_p", "seed", "device", "threads"):
        params = [inspect.signature(c).parameters[name] for c in commands]
        assert len({id(p.annotation) for p in params}) == 1, name
        assert len({p.default for p in params}) == 1, name
    assert inspect.signature(infill.infill).parameters["temp"].default == DEFAULT_TEMPERATURE

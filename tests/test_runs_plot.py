"""Looking at runs: `seqgen runs` (table and --json), `seqgen plot` (terminal and pictures), the
chart at the end of `seqgen train`, `seqgen compose --png`, and damaged or empty run folders."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from seqgen.cli import app

runner = CliRunner()
SETTINGS = {  # two runs with different settings, 30 steps each
    "wide": ["--dim", "32", "--layers", "1", "--window", "16", "--batch", "4"],
    "narrow": ["--dim", "16", "--layers", "1", "--window", "24", "--batch", "2"],
}


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for f in fragments:
        assert f in result.stderr, result.stderr


def records(run_dir: Path) -> list[dict]:
    """The evaluations of a run (the training-curve points between them left out)."""
    return [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if r["event"] == "eval"]


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    from conftest import TEXT

    root = tmp_path_factory.mktemp("look")
    corpus = root / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    for name, opts in SETTINGS.items():
        r = run("train", corpus, "--steps", 30, "--out", root / "runs" / name, "--threads", 1, "--quiet", *opts)
        assert r.exit_code == 0, r.output
    return root / "runs"


@pytest.fixture
def workdir(runs_dir, tmp_path, monkeypatch) -> Path:
    """A fresh folder holding a copy of the two runs in runs/, as the working directory."""
    shutil.copytree(runs_dir, tmp_path / "runs")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def runs_json(*args) -> list[dict]:
    r = run("runs", *args, "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


# ---- seqgen runs -----------------------------------------------------------------------------


def test_runs_json_has_the_figures_of_each_run(workdir):
    listed = {d["name"]: d for d in runs_json()}
    assert set(listed) == set(SETTINGS)
    for name, d in listed.items():
        folder = workdir / "runs" / name
        recs = records(folder)
        cfg = json.loads((folder / "config.json").read_text())
        best = min(recs, key=lambda r: r["val_loss"])
        batch, window = int(SETTINGS[name][7]), int(SETTINGS[name][5])
        assert d["steps"] == 30 and d["evaluations"] == len(recs)
        assert d["best_val_loss"] == pytest.approx(best["val_loss"])
        assert d["best_val_bits"] == pytest.approx(best["val_loss"] / math.log(2))
        assert d["best_step"] == best["step"]
        assert d["tokens_seen"] == 30 * batch * window
        assert d["elapsed_s"] == pytest.approx(recs[-1]["elapsed"])
        assert (d["model"], d["dim"], d["layers"], d["params"]) == ("lstm", cfg["model"]["dim"], 1, cfg["params"])
        assert d["corpus"] == "corpus"
        assert d["state"] == "finished" and not d["resumable"] and not d["exported"]
        assert d["problems"] == []


def test_the_training_curve_has_a_point_between_evaluations(workdir):
    from seqgen.history import load_run

    curve = load_run(workdir / "runs" / "wide").curve()
    steps = [x for x, _ in curve.train_points("steps")]
    assert steps == list(range(1, 31))  # 30 steps: every step is a hundredth of the run or more
    assert len(curve.steps) < 30 and set(curve.steps) <= set(steps)  # the evaluations are fewer
    assert all(math.isfinite(loss) for _, loss in curve.train_points("time"))


def test_runs_sorts_by_loss_and_by_date(workdir):
    by_loss = runs_json("--sort", "loss")
    assert [d["best_val_loss"] for d in by_loss] == sorted(d["best_val_loss"] for d in by_loss)
    by_date = runs_json("--sort", "date")
    assert [d["when"] for d in by_date] == sorted((d["when"] for d in by_date), reverse=True)
    assert [d["name"] for d in by_date] == ["narrow", "wide"]  # trained second, so newest


def test_runs_table_shows_name_loss_and_state(workdir):
    r = run("runs")
    assert r.exit_code == 0, r.output
    d = {x["name"]: x for x in runs_json()}
    for name in SETTINGS:
        assert name in r.stdout
        assert f"{d[name]['best_val_loss']:.3f}" in r.stdout and f"{d[name]['best_val_bits']:.3f}" in r.stdout
    assert "done" in r.stdout and "lstm" in r.stdout


def test_a_run_with_budget_left_is_resumable(workdir):
    folder = workdir / "runs" / "wide"
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    fourth = [i for i, line in enumerate(lines) if json.loads(line)["event"] == "eval"][3]
    (folder / "metrics.jsonl").write_text("\n".join(lines[: fourth + 1]) + "\n")  # as if stopped at 40%
    d = {x["name"]: x for x in runs_json()}["wide"]
    assert d["state"] == "resumable" and d["resumable"] and d["steps"] == json.loads(lines[fourth])["step"]
    (folder / "last.pt").unlink()
    assert {x["name"]: x for x in runs_json()}["wide"]["state"] == "no checkpoint"


def test_an_export_bundle_marks_its_run_exported(workdir):
    bundle = workdir / "exports" / "wide"
    bundle.mkdir(parents=True)
    # what seqgen.export.bundle_meta records: the checkpoint path as given, and its step
    (bundle / "seqgen.json").write_text(
        json.dumps({"format": 1, "export": {"source": "runs/wide/best.pt", "step": 30}})
    )
    (workdir / "exports" / "broken").mkdir()
    (workdir / "exports" / "broken" / "seqgen.json").write_text("{not json")
    d = {x["name"]: x for x in runs_json()}
    assert d["wide"]["exported"] and d["wide"]["exports"] == [{"path": str(Path("exports") / "wide"), "step": 30}]
    assert not d["narrow"]["exported"]


def test_runs_of_one_run_folder_and_of_an_empty_folder(workdir):
    assert [d["name"] for d in runs_json("runs/wide")] == ["wide"]
    (workdir / "none").mkdir()
    r = run("runs", "none")
    assert r.exit_code == 0 and "no runs under none" in r.stderr
    assert runs_json("none") == []


def test_runs_user_errors_are_one_line(workdir):
    assert_one_line_error(run("runs", "nowhere"), "nowhere does not exist")
    assert_one_line_error(run("runs", "--sort", "colour"), "cannot sort by 'colour'")


# ---- damaged and empty runs ------------------------------------------------------------------


def test_damaged_metrics_lines_are_skipped_and_named(workdir):
    folder = workdir / "runs" / "wide"
    good = records(folder)
    written = len((folder / "metrics.jsonl").read_text().splitlines())
    with open(folder / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 31, "loss": 2.0, "val_lo')  # a run killed in the middle of a write
    d = {x["name"]: x for x in runs_json()}["wide"]
    assert d["evaluations"] == len(good) and d["steps"] == 30
    assert d["best_val_loss"] == pytest.approx(min(r["val_loss"] for r in good))
    assert d["problems"] == [f"{Path('runs/wide/metrics.jsonl')}: skipped 1 damaged line (line {written + 1})"]
    r = run("plot", "runs/wide")
    assert r.exit_code == 0, r.output
    assert "skipped 1 damaged line" in r.stderr and "best" in r.stdout


def test_a_metrics_file_that_is_all_damage_is_one_line(workdir):
    (workdir / "runs" / "wide" / "metrics.jsonl").write_bytes(b"\x00\xff garbage\n[1, 2]\n")
    assert_one_line_error(run("plot", "runs/wide"), "no readable evaluation", "2 damaged line(s)")
    assert {x["name"]: x for x in runs_json()}["wide"]["best_val_loss"] is None


def test_a_run_with_no_evaluations_yet(workdir):
    folder = workdir / "runs" / "fresh"
    folder.mkdir()
    shutil.copy(workdir / "runs" / "wide" / "config.json", folder)
    assert_one_line_error(run("plot", "runs/fresh"), "runs/fresh has no evaluations yet")
    (folder / "metrics.jsonl").write_text("")
    assert_one_line_error(run("plot", "fresh"), "no evaluations yet", "is empty")
    d = {x["name"]: x for x in runs_json()}["fresh"]
    assert d["steps"] is None and d["best_val_loss"] is None and d["state"] == "no checkpoint"
    assert "fresh" in run("runs").stdout
    r = run("plot", "runs/wide", "runs/fresh")  # drawn without it, and said so
    assert r.exit_code == 0 and "left out: runs/fresh has no evaluations yet" in r.stderr


def test_a_damaged_config_still_lists(workdir):
    (workdir / "runs" / "narrow" / "config.json").write_text("{")
    d = {x["name"]: x for x in runs_json()}["narrow"]
    assert d["steps"] == 30 and d["model"] is None and d["tokens_seen"] is None
    assert any("config.json cannot be read" in p for p in d["problems"])
    r = run("plot", "runs/narrow", "--x", "tokens")
    assert r.exit_code == 1 and "Traceback" not in r.output
    warning, error = r.stderr.strip().splitlines()
    assert "config.json cannot be read" in warning and error.startswith("error: narrow: tokens seen are unknown")
    assert run("plot", "runs/narrow").exit_code == 0  # steps need no config


# ---- seqgen plot -----------------------------------------------------------------------------


def test_plot_in_the_terminal_draws_every_run(workdir):
    r = run("plot", "runs/wide", "narrow", "--x", "tokens")
    assert r.exit_code == 0, r.output
    assert "wide" in r.stdout and "narrow" in r.stdout and "tokens seen" in r.stdout
    assert r.stdout.count("\u25c6 best") == 2 and any(0x2800 < ord(c) <= 0x28FF for c in r.stdout)
    one = run("plot", "runs/wide", "--x", "time")
    assert one.exit_code == 0 and "training (moving average)" in one.stdout and "training time" in one.stdout


@pytest.mark.parametrize("x", ["steps", "time", "tokens"])
def test_plot_writes_a_png_of_the_asked_size(workdir, x):
    Image = pytest.importorskip("PIL.Image")
    r = run("plot", "runs/wide", "runs/narrow", "--x", x, "--out", "curves.png", "--size", "640x400")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == "wrote curves.png"
    with Image.open(workdir / "curves.png") as im:
        assert im.format == "PNG" and im.size == (640, 400)
    assert not list(workdir.glob(".curves.png.tmp*"))


def test_plot_default_size_and_svg(workdir):
    Image = pytest.importorskip("PIL.Image")
    assert run("plot", "wide", "--out", "pics/one.png").exit_code == 0
    with Image.open(workdir / "pics" / "one.png") as im:
        assert im.size == (1000, 600)
    r = run("plot", "wide", "narrow", "--out", "curves.svg")
    assert r.exit_code == 0, r.output
    svg = (workdir / "curves.svg").read_text()
    assert "<svg" in svg and "wide" in svg and "narrow" in svg  # names in the legend


@pytest.mark.parametrize("args, fragment", [
    (["nowhere"], "run nowhere does not exist"),
    (["runs/wide", "--x", "epochs"], "--x must be one of steps, time, tokens"),
    (["runs/wide", "--out", "curves.jpg"], "expected a .png, .svg or .pdf"),
    (["runs/wide", "--out", "c.png", "--size", "big"], "expected WIDTHxHEIGHT"),
    (["runs/wide", "--size", "600x400"], "--size is for pictures"),
], ids=["missing-run", "bad-axis", "bad-format", "bad-size", "size-without-out"])
def test_plot_user_errors_are_one_line(workdir, args, fragment):
    assert_one_line_error(run("plot", *args), fragment)


def test_plot_of_a_folder_that_is_not_a_run(workdir):
    (workdir / "notes").mkdir()
    assert_one_line_error(run("plot", "notes"), "notes is not a run folder")


# ---- the chart at the end of training --------------------------------------------------------


def test_train_ends_with_a_chart_unless_quiet(tmp_path, text_corpus, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = ["--steps", 20, "--dim", 16, "--layers", 1, "--window", 16, "--batch", 4, "--threads", 1]
    r = run("train", text_corpus, "--out", "runs/loud", *common)
    assert r.exit_code == 0, r.output
    assert "\u25c6 best" in r.stderr and "loss (nats per token)" in r.stderr and "steps" in r.stderr
    assert r.stdout == ""
    q = run("train", text_corpus, "--out", "runs/quiet", "--quiet", *common)
    assert q.exit_code == 0 and "\u25c6" not in q.stderr and "best val loss" in q.stderr


def test_ctrl_c_shows_the_chart_and_leaves_a_resumable_run(tmp_path, text_corpus, monkeypatch):
    from seqgen.train.fit import Fit

    real, calls = Fit._evaluate_and_save, []

    def interrupt_at_the_fourth(self, *args):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(Fit, "_evaluate_and_save", interrupt_at_the_fourth)
    monkeypatch.chdir(tmp_path)
    r = run("train", text_corpus, "--out", "runs/cut", "--steps", 40, "--dim", 16, "--layers", 1, "--window", 16,
            "--batch", 4, "--threads", 1)
    assert r.exit_code == 130, r.output
    assert "\u25c6 best" in r.stderr and "Resume with" in r.stderr
    d = runs_json()[0]
    assert d["evaluations"] == 3 and d["state"] == "resumable" and d["resumable"]


def test_pictures_without_matplotlib_name_the_extra(workdir, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else find_spec(name, *a)
    )
    assert_one_line_error(run("plot", "wide", "--out", "c.png"), "needs matplotlib", "seqgen[plot]")
    assert not (workdir / "c.png").exists()
    assert run("plot", "wide").exit_code == 0  # the terminal chart needs no extra


# ---- compose --png ---------------------------------------------------------------------------


def test_piano_roll_picture_of_a_piece(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    import numpy as np

    from seqgen import plots
    from seqgen.music.piece import Piece

    notes = [(i * 240, 240, 60 + i % 12, 90, 0) for i in range(24)] + [(0, 1920, 40, 70, 33), (960, 120, 36, 100, 128)]
    piece = Piece.from_notes(notes, tpq=480, time_sigs=np.array([[0, 3, 4], [2880, 4, 4]]))
    assert plots.bar_ticks(piece) == [0, 1440, 2880, 4800]
    assert plots.instrument_name(33) == "program 33 (bass)" and plots.instrument_name(128) == "drums"
    path = plots.piano_roll(piece, tmp_path / "roll.png", size=(800, 300))
    with Image.open(path) as im:
        assert im.size == (800, 300)
    empty = Piece.from_notes([], tpq=480)
    assert plots.piano_roll(empty, tmp_path / "empty.svg").read_text().count("<svg") == 1


def test_compose_png_writes_the_piano_roll(tmp_path, music_dir, monkeypatch):
    Image = pytest.importorskip("PIL.Image")
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "tunes"
    folder.mkdir()
    for name in ("english1.mid", "english2.mid"):
        shutil.copy(music_dir / name, folder / name)
    r = run("train", folder, "--size", "tiny", "--steps", 4, "--window", 32, "--batch", 4, "--threads", 1,
            "--out", "runs/tunes", "-q")
    assert r.exit_code == 0, r.output
    r = run("compose", "runs/tunes", "--bars", 2, "--seed", 0, "--out", "tune.mid", "--png", "roll.png", "--no-roll")
    assert r.exit_code == 0, r.output
    assert "wrote roll.png" in r.stdout and (tmp_path / "tune.mid").exists()
    with Image.open(tmp_path / "roll.png") as im:
        assert im.format == "PNG" and im.size == (1400, 600)
    bad = run("compose", "runs/tunes", "--bars", 2, "--out", "t2.mid", "--png", "roll.gif")
    assert_one_line_error(bad, "expected a .png, .svg or .pdf")
    assert not (tmp_path / "t2.mid").exists()  # checked before composing


# ---- layering --------------------------------------------------------------------------------


def test_help_and_history_load_neither_torch_nor_matplotlib(runs_dir):
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom seqgen.cli import app\n"
            "for args in (['--help'], ['runs', '--help'], ['plot', '--help']):\n"
            "    assert CliRunner().invoke(app, args).exit_code == 0\n"
            "from seqgen.history import list_runs\n"
            f"assert len(list_runs({str(runs_dir)!r})) == 2\n"
            "print(sorted(m for m in ('torch', 'music21', 'matplotlib') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"

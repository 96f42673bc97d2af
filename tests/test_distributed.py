"""Training in two processes on the CPU (torchrun, gloo), through the CLI as a user would run it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from seqgen import checkpoint as ckpt_io

pytestmark = pytest.mark.slow
COMMON = ["--window", "32", "--batch", "8", "--objective", "mixed", "--threads", "1", "--quiet", "--eval-every", "0.5"]


def seqgen(*args, wait: bool = True, env_extra: dict | None = None, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    cmd = [sys.executable, "-m", "seqgen", *map(str, args)]
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kw)


def weights(run: Path) -> dict:
    return torch.load(run / "last.pt", weights_only=True)["weights"]


@pytest.mark.parametrize("model", [["--model", "lstm", "--dim", "32", "--emb-dim", "16"],
                                   ["--model", "transformer", "--size", "tiny"]], ids=["lstm", "transformer"])
def test_two_processes_train_the_same_weights_as_one(text_corpus, tmp_path, model):
    one = seqgen("train", text_corpus, "--steps", 6, "--out", tmp_path / "one", *COMMON, *model)
    assert one.returncode == 0, one.stderr
    two = seqgen("train", text_corpus, "--steps", 6, "--devices", 2, "--out", tmp_path / "two", *COMMON, *model)
    assert two.returncode == 0, two.stderr
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert a.keys() == b.keys() and not any(k.startswith(("module.", "_orig_mod.")) for k in b)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=2e-5, rtol=1e-4), (k, (a[k] - b[k]).abs().max())
    # and the weights did move: the comparison is not between two untrained models
    assert ckpt_io.load(tmp_path / "two" / "last.pt").step == 6
    first = ckpt_io.load(tmp_path / "one" / "best.pt")
    assert first.step > 0


def test_a_two_process_run_resumes_in_one_and_counts_on(text_corpus, tmp_path):
    run = tmp_path / "run"
    two = seqgen("train", text_corpus, "--steps", 4, "--devices", 2, "--out", run, "--size", "tiny", *COMMON)
    assert two.returncode == 0, two.stderr
    one = seqgen("train", text_corpus, "--out", run, "--resume", "--steps", 7, "--quiet")
    assert one.returncode == 0, one.stderr
    saved = ckpt_io.load(run / "last.pt")
    assert saved.step == 7 and saved.train.devices == 1


def test_a_batch_that_does_not_divide_is_refused(text_corpus, tmp_path):
    r = seqgen("train", text_corpus, "--steps", 2, "--devices", 3, "--batch", 8, "--out", tmp_path / "r")
    assert r.returncode == 1 and "does not divide among 3 processes" in r.stderr
    assert "Traceback" not in r.stderr


def _descendants(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    out = [int(c) for c in children]
    for c in list(out):
        out += _descendants(c)
    return out


def _rank_pids(parent: int) -> dict[int, int]:
    ranks = {}
    for pid in _descendants(parent):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for item in env:
            if item.startswith(b"RANK="):
                ranks[int(item[5:])] = pid
    return ranks


def _start_long_run(text_corpus: Path, run: Path) -> subprocess.Popen:
    proc = seqgen("train", text_corpus, "--time", "5m", "--devices", 2, "--out", run, "--size", "tiny",
                  "--window", "32", "--batch", "8", "--threads", "1", "--quiet", "--eval-every", "0.0005",
                  wait=False, start_new_session=True)
    deadline = time.monotonic() + 120
    while not (run / "last.pt").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the training did not start"
        time.sleep(0.2)
    return proc


def test_ctrl_c_to_the_launcher_leaves_one_usable_checkpoint(text_corpus, tmp_path):
    run = tmp_path / "run"
    proc = _start_long_run(text_corpus, run)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal does: every process of the group gets it
    _, stderr = proc.communicate(timeout=90)
    assert proc.returncode != 0
    assert "--resume" in stderr, stderr
    saved = ckpt_io.load(run / "last.pt")
    assert saved.step > 0
    assert not list(run.glob(".*.tmp*"))
    assert not _rank_pids(proc.pid)


def test_sigterm_to_the_launcher_alone_saves_and_exits_143(text_corpus, tmp_path):
    """What `kill PID`, `timeout` or a scheduler do: only the launcher gets the signal."""
    run = tmp_path / "run"
    proc = _start_long_run(text_corpus, run)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 143, stderr
    assert "stopped by SIGTERM" in stderr and "--resume" in stderr, stderr
    assert ckpt_io.load(run / "last.pt").step > 0
    assert not list(run.glob(".*.tmp*")) and not _rank_pids(proc.pid)


def test_a_crashing_rank_ends_the_job_within_seconds(text_corpus, tmp_path):
    run = tmp_path / "run"
    proc = _start_long_run(text_corpus, run)
    ranks = _rank_pids(proc.pid)
    assert set(ranks) == {0, 1}, ranks
    os.kill(ranks[1], signal.SIGKILL)
    t0 = time.monotonic()
    _, stderr = proc.communicate(timeout=60)
    took = time.monotonic() - t0
    assert proc.returncode != 0 and took < 30, (took, stderr[-2000:])
    assert "error:" in stderr and "Traceback" not in stderr, stderr[-3000:]
    assert "the process of rank 1 was killed by SIGKILL" in stderr, stderr[-3000:]
    ckpt_io.load(run / "last.pt")  # what was saved still loads


def test_the_launcher_names_the_cause_of_a_failure_not_its_consequences():
    from seqgen.distributed import _first_failure

    # rank 1 killed (OOM killer), rank 0 saw its peer gone and exited 1: the kill is the cause
    assert _first_failure({0: 1, 1: -9}) == "the process of rank 1 was killed by SIGKILL"
    # rank 1 raised; the launcher then sent SIGTERM to rank 0
    assert _first_failure({0: -15, 1: 1}).startswith("the process of rank 1 ended with exit code 1")
    # rank 0 saved on SIGTERM and exited 143, rank 1 aborted: still a failure of rank 1
    assert _first_failure({0: 143, 1: -6}) == "the process of rank 1 was killed by SIGABRT"


@pytest.mark.parametrize("opts", [["--precision", "bf16"], ["--compile"]], ids=["bf16", "compile"])
def test_precision_and_compile_train_a_tiny_model_on_the_cpu(text_corpus, tmp_path, opts):
    from seqgen.device import cpu_bf16_supported

    if "bf16" in opts and not cpu_bf16_supported():
        pytest.skip("this CPU has no bf16 kernels (no AVX-512 or AMX): the refusal is tested instead")
    run = tmp_path / "run"
    r = seqgen("train", text_corpus, "--steps", 3, "--out", run, "--size", "tiny", "--window", "16", "--batch", "2",
               "--threads", "1", "--quiet", *opts)
    assert r.returncode == 0, r.stderr
    saved = ckpt_io.load(run / "last.pt")
    assert saved.step == 3 and all(v.dtype == torch.float32 for v in saved.model.state_dict().values())
    assert not any(k.startswith("_orig_mod.") for k in weights(run))  # the plain module's weights
    cfg = saved.train
    assert (cfg.precision, cfg.compile) == ("bf16" if "bf16" in opts else "auto", "--compile" in opts)


def test_bf16_on_a_cpu_without_bf16_kernels_is_refused_in_one_line(text_corpus, tmp_path):
    """What an AVX2-only CPU reports (the check forced): one line, nothing written; the check
    forced the other way, the same command trains (only where the CPU really has the kernels)."""
    from seqgen.device import BF16_ENV, cpu_bf16_supported

    args = ["train", text_corpus, "--steps", 3, "--size", "tiny", "--window", "16", "--batch", "2", "--threads", "1",
            "--quiet", "--precision", "bf16"]
    r = seqgen(*args, "--out", tmp_path / "no", env_extra={BF16_ENV: "0"})
    assert r.returncode == 1 and "this CPU has no bf16 kernels" in r.stderr and "--precision fp32" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "no" / "last.pt").exists()
    forced = seqgen(*args, "--out", tmp_path / "yes", env_extra={BF16_ENV: "1"})
    if cpu_bf16_supported():  # the real check says yes: forcing it on changes nothing
        assert forced.returncode == 0, forced.stderr


def test_the_bf16_check_reads_the_cpu_and_can_be_forced(monkeypatch):
    import torch

    from seqgen.device import BF16_ENV, cpu_bf16_supported

    monkeypatch.setenv(BF16_ENV, "0")
    assert not cpu_bf16_supported()
    monkeypatch.setenv(BF16_ENV, "1")
    assert cpu_bf16_supported()
    monkeypatch.delenv(BF16_ENV)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert not cpu_bf16_supported()  # an AVX2-only CPU, as torch reports it


def test_fp16_on_the_cpu_is_refused_in_one_line(text_corpus, tmp_path):
    r = seqgen("train", text_corpus, "--steps", 3, "--out", tmp_path / "r", "--size", "tiny", "--precision", "fp16",
               "--device", "cpu", "--quiet")
    assert r.returncode == 1 and "fp16 needs a GPU" in r.stderr and "Traceback" not in r.stderr


def test_a_signal_during_the_shared_decision_is_kept_for_the_next_step(text_corpus, tmp_path, monkeypatch):
    """Rank 0's signal handler may run while the stop decision is being broadcast: the other
    ranks were told to go on, so this step runs, and the next decision stops every rank."""
    import torch.distributed as dist

    from seqgen.config import TrainConfig
    from seqgen.data.load import load_corpus
    from seqgen.distributed import Group
    from seqgen.train import Trainer

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        group = Group.join("cpu")
        trainer = Trainer(TrainConfig(size="tiny", steps=50, batch=4, window=16, eval_every=1.0),
                          load_corpus(str(text_corpus)), tmp_path / "run", group=group)
        calls = []
        shared = group.decide

        def decide_with_a_signal_arriving(*values):
            calls.append(values)
            out = shared(*values)
            if len(calls) == 4:  # the signal lands while the 4th step's decision is on the wire
                trainer.request_stop(signal.SIGTERM)
            return out

        monkeypatch.setattr(group, "decide", decide_with_a_signal_arriving)
        result = trainer.run()
    finally:
        dist.destroy_process_group()
    assert result.interrupted and result.signal == signal.SIGTERM
    assert result.step == 4  # the 4th step ran (every rank was told to), the 5th decision stopped
    assert ckpt_io.load(tmp_path / "run" / "last.pt").step == 4


def test_two_processes_train_a_music_run_with_its_narrowed_output_layer(tmp_path):
    """Every rank lists the same tokens for its output layer (``VocabHead``), or DDP could not
    line up the parameters; the run matches a one-process run's layer."""
    from music21 import corpus

    folder = tmp_path / "midi"
    folder.mkdir()
    for name in ("bwv66.6", "bwv269"):
        corpus.parse(f"bach/{name}").write("midi", fp=str(folder / f"{name}.mid"))
    runs = {}
    for n in (1, 2):
        res = seqgen("train", folder, "--steps", 4, "--devices", n, "--out", tmp_path / f"run{n}", "--size", "tiny",
                     *COMMON)
        assert res.returncode == 0, res.stderr
        runs[n] = ckpt_io.load(tmp_path / f"run{n}" / "last.pt")
    ids = runs[1].model.config.head_ids
    assert ids is not None and runs[2].model.config.head_ids == ids
    assert runs[2].model.head.weight.shape == (len(ids) + 1, runs[2].model.config.dim)
    assert runs[2].step == 4

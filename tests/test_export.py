"""ONNX export, parity with torch, int8 quantization and the torch-free onnxruntime engine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from seqgen.config import MODEL_TYPES

TYPES = [pytest.param(t, id=t) for t in MODEL_TYPES]
WINDOW = 16


def make_run(root: Path, model_type: str, corpus: Path, objective: str = "mixed") -> Path:
    """A run folder with an untrained tiny model of ``model_type`` (its corpus named in ``extra``)."""
    import torch

    from seqgen import checkpoint as ckpt_io
    from seqgen.config import TrainConfig
    from seqgen.models import build_model, make_config
    from seqgen.tokenizers import CharTokenizer
    from seqgen.train_state import TrainState

    torch.manual_seed(0)
    tok = CharTokenizer.from_chars(corpus.read_text(encoding="utf-8"))
    overrides = {"window": WINDOW} if model_type == "transformer" else {}
    if model_type == "lstm-attn":
        overrides["memory"] = 12  # shorter than the parity sequences: the memory slides
    model = build_model(make_config(model_type, tok.vocab_size, "tiny", mid_id=tok.mid_id, **overrides))
    with torch.no_grad():  # larger weights than the init, so logits differ visibly between tokens
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    run = root / f"run-{model_type}"
    train = TrainConfig(model=model_type, size="tiny", window=WINDOW, objective=objective)
    ckpt = ckpt_io.Checkpoint(model=model, tokenizer=tok, train=train, state=TrainState(step=1), corpus=str(corpus))
    ckpt_io.save(ckpt, run / ckpt_io.BEST)
    return run


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    from conftest import TEXT

    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory, corpus):
    """Export each model type once per module: {(type, quantize): (run, bundle, report)}."""
    from seqgen.export import export_run

    root = tmp_path_factory.mktemp("exports")
    done: dict = {}

    def get(model_type: str, quantize: str | None = None):
        key = (model_type, quantize)
        if key not in done:
            run = root / f"run-{model_type}"
            if not run.exists():
                make_run(root, model_type, corpus)
            out = root / "bundles" / f"{model_type}-{quantize or 'fp32'}"
            done[key] = (run, out, export_run(run, out, quantize=quantize, loss_tokens=512))
        return done[key]

    return get


# ---- export and parity -------------------------------------------------------------------------
@pytest.mark.parametrize("model_type", TYPES)
def test_export_matches_torch(exported, model_type):
    """fp32 logits match torch at two prefill lengths, cached steps and a chunk; losses agree."""
    import onnx

    from seqgen.export import TOLERANCE

    run, bundle, report = exported(model_type)
    assert report.max_abs_diff < 1e-4 < TOLERANCE
    assert report.val_loss_torch is not None and report.val_tokens == 512
    assert abs(report.val_loss_change) < 1e-4
    meta = json.loads((bundle / "seqgen.json").read_text())
    assert meta["model_type"] == model_type and meta["objective"] == "mixed" and meta["format"] == 1
    assert meta["quantize"] is None and meta["tokenizer"]["type"] == "char"
    graph = onnx.load(str(bundle / "model.onnx")).graph
    names = [i.name for i in graph.input]
    assert names == meta["inputs"] == ["ids"] + [s["input"] for s in meta["state"]]
    assert [o.name for o in graph.output] == meta["outputs"]
    dims = [d.dim_param for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "seq"]  # dynamic batch and sequence
    for s in meta["state"]:
        assert "batch" in s["shape"]
    if model_type == "transformer":  # each row's own position, and its cache's padding when rows are stacked
        assert [(s["name"], s["dtype"], s["shape"]) for s in meta["state"][-2:]] == [
            ("pos", "int64", ["batch"]), ("pad", "int64", ["batch"])]
        assert {"Attention", "RotaryEmbedding"} <= {n.op_type for n in graph.node}  # fused
    else:
        assert [s["name"] for s in meta["state"]] == list(_model(run).state_names)
    assert not list(bundle.parent.glob(".*tmp*")), "the temp folder was left behind"


def _model(run: Path):
    from seqgen import checkpoint as ckpt_io

    return ckpt_io.load(run / "best.pt").model


@pytest.mark.parametrize("model_type", TYPES)
def test_bundle_samples_like_torch(exported, model_type):
    """Greedy decoding and infilling give the same tokens from the bundle and from the run."""
    from seqgen.engines.load import open_generator
    from seqgen.sampling import complete, infill

    run, bundle, _ = exported(model_type)
    onnx_gen, torch_gen = open_generator(bundle), open_generator(run, device="cpu")
    assert type(onnx_gen.engine).__name__ in ("OnnxEngine", "KvBufferEngine") and onnx_gen.knows_infill
    assert onnx_gen.tokenizer == torch_gen.tokenizer
    prompt = torch_gen.tokenizer.encode("All:\nSpeak")
    a = np.stack(list(complete(onnx_gen, prompt, 40, temperature=0, batch=2)))
    b = np.stack(list(complete(torch_gen, prompt, 40, temperature=0, batch=2)))
    np.testing.assert_array_equal(a, b)
    assert len(set(a[:, 0].tolist())) > 1, "greedy output is one repeated token: a weak test"
    pre, suf = torch_gen.tokenizer.encode("First "), torch_gen.tokenizer.encode(" speak.")
    mid_o = infill(onnx_gen, pre, suf, 12, temperature=0)
    mid_t = infill(torch_gen, pre, suf, 12, temperature=0)
    np.testing.assert_array_equal(mid_o[0], mid_t[0])
    # sampled with the same seed: the same tokens too (the same numpy rule picks them)
    a = np.stack(list(complete(onnx_gen, prompt, 20, temperature=1.0, rng=np.random.default_rng(3))))
    b = np.stack(list(complete(torch_gen, prompt, 20, temperature=1.0, rng=np.random.default_rng(3))))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("quantize", [None, "int8"], ids=["fp32", "int8"])
@pytest.mark.parametrize("model_type", TYPES)
def test_drawing_in_the_graph_gives_the_steps_tokens(exported, model_type, quantize, monkeypatch):
    """The onnxruntime engine's sampling loop (many ids per call) gives the ids and log-probabilities
    of one ``advance`` per step: batch 3, banned ids, a stop id, past a sliding cache's cuts."""
    from seqgen import sampling
    from seqgen.engines.load import open_generator
    from seqgen.options import SamplingOptions

    gen = open_generator(exported(model_type, quantize)[1])
    assert hasattr(gen.engine, "draw") or type(gen.engine).__name__ == "KvBufferEngine"
    prompt = np.stack([gen.tokenizer.encode(t) for t in ("First Cit", "All:\nSpea", "Speak, sp")])
    calls = []
    if hasattr(gen.engine, "draw"):
        real = gen.engine.draw
        monkeypatch.setattr(gen.engine, "draw", lambda *a: calls.append(len(a[2])) or real(*a))

    def run(options, stop):
        rng = np.random.default_rng(7)
        out = list(sampling.generate_steps(gen.engine, prompt, 150, options, rng, stop_id=stop, banned=(1, 2)))
        steps = sampling.generate_steps(gen.engine, prompt, 150, options, rng, stop_id=stop, banned=(1, 2))
        early = [next(steps) for _ in range(9)]  # a reader that stops early
        steps.close()
        after.append((rng.random(), early[-1][0].tolist()))  # the generator is left where one step per call leaves it
        return np.stack([i for i, _ in out]), np.stack([lp for _, lp in out])

    for temperature, stop in ((1.0, None), (0.7, 3)):
        opts = SamplingOptions(temperature=temperature)
        after: list = []
        ids, logp = run(opts, stop)
        with monkeypatch.context() as m:
            m.setattr(sampling, "_drawable", lambda engine, options: False)
            ref_ids, ref_logp = run(opts, stop)
        if not (quantize and stop is not None):  # (int8 rows meet their stop at different steps, see below)
            assert after[0] == after[1]
        live = np.cumsum(ids == stop, axis=0) - (ids == stop) == 0 if stop is not None else np.ones_like(ids, bool)
        if quantize and stop is not None:
            # int8 quantizes each call's activations over the whole batch, so a stopped row (fed its
            # stop id one way, its draw the other) shifts the others: compare up to the first stop
            every = live.all(axis=1)
            first = len(every) if every.all() else int(np.argmin(every))
            assert first > 5, "a row stopped at once: a weak test"
            ids, ref_ids, logp, ref_logp, live = (a[:first] for a in (ids, ref_ids, logp, ref_logp, live))
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_allclose(logp[live], ref_logp[live], atol=1e-9)  # a stopped row's are the stop's
        assert not np.isin(ids, (1, 2)).any() and len(set(ids.ravel().tolist())) > 3
    if hasattr(gen.engine, "draw"):
        assert calls and max(calls) > 1, "the loop never drew more than one id per call"


@pytest.mark.parametrize("model_type", TYPES)
def test_int8_quantization(exported, model_type):
    """int8 bundles hold quantized operators, stay close to torch and report the loss change."""
    import onnx

    from seqgen.export import INT8_MAX_LOSS_INCREASE

    _, bundle, report = exported(model_type, "int8")
    ops = {n.op_type for n in onnx.load(str(bundle / "model.onnx")).graph.node}
    assert ops & {"MatMulInteger", "DynamicQuantizeMatMul", "DynamicQuantizeLSTM", "DynamicQuantizeLinear"}
    assert report.quantize == "int8" and 0 < report.int8_max_abs_diff < 5
    assert report.max_abs_diff < 1e-4  # the fp32 graph was checked first
    assert report.val_loss_change is not None and report.val_loss_change != 0
    assert abs(report.val_loss_change) < INT8_MAX_LOSS_INCREASE
    assert json.loads((bundle / "seqgen.json").read_text())["quantize"] == "int8"


def heavy_modules_after(code: str) -> str:
    """Run ``code`` in a fresh interpreter; which torch/music21 modules it loaded."""
    code += "import sys\nprint(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'music21')))\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.mark.parametrize("model_type", TYPES)
def test_engine_imports_no_torch(exported, model_type):
    """open_bundle and sampling load neither torch nor music21."""
    _, bundle, _ = exported(model_type)
    code = (
        "import sys, numpy as np\n"
        "from seqgen.engines.load import open_generator\n"
        "from seqgen.sampling import complete\n"
        f"g = open_generator({str(bundle)!r})\n"
        "ids = list(complete(g, g.tokenizer.encode('All'), 5, rng=np.random.default_rng(0)))\n"
        "assert len(ids) == 5\n"
    )
    assert heavy_modules_after(code) == "[]"


# ---- failures and the bundle format ----------------------------------------------------------------
def test_failed_check_leaves_nothing(tmp_path, corpus, monkeypatch):
    from seqgen import export as ex
    from seqgen.export import ExportError, export_run

    run = make_run(tmp_path, "gru", corpus)
    monkeypatch.setattr(ex, "max_logit_difference", lambda model, engine, cases=None: 0.5)
    with pytest.raises(ExportError, match="differs from torch by 0.5"):
        export_run(run, tmp_path / "out" / "b", loss_tokens=0)
    assert list((tmp_path / "out").iterdir()) == []


def test_bundle_errors(exported, tmp_path):
    import shutil

    from seqgen.engines.onnx_engine import open_bundle
    from seqgen.errors import CheckpointError
    from seqgen.sampling import complete

    _, bundle, _ = exported("gru")
    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    meta = json.loads((copy / "seqgen.json").read_text())
    (copy / "seqgen.json").write_text(json.dumps({**meta, "format": 99}))
    with pytest.raises(CheckpointError, match="format 99.*upgrade seqgen"):
        open_bundle(copy)
    (copy / "seqgen.json").write_text(json.dumps(meta))
    assert open_bundle(copy).model_type == "gru" and open_bundle(copy).engine.can_draw
    (copy / meta["loop_file"]).unlink()
    with pytest.raises(CheckpointError, match="sample_loop.onnx is missing; re-export"):
        open_bundle(copy)
    # a bundle exported before the sampling loop: it samples one step per call, the same ids
    older = {k: v for k, v in meta.items() if k != "loop_file"}
    (copy / "seqgen.json").write_text(json.dumps(older))
    old_gen, new_gen = open_bundle(copy), open_bundle(bundle)
    assert not old_gen.engine.can_draw
    prompt = old_gen.tokenizer.encode("First")
    a, b = (list(complete(g, prompt, 30, temperature=0.9, rng=np.random.default_rng(4))) for g in (old_gen, new_gen))
    np.testing.assert_array_equal(np.stack(a), np.stack(b))
    (copy / "model.onnx").unlink()
    with pytest.raises(CheckpointError, match="model.onnx is missing"):
        open_bundle(copy)
    (copy / "seqgen.json").unlink()
    with pytest.raises(CheckpointError, match="seqgen.json is missing"):
        open_bundle(copy)


def test_default_out_is_exports_run_name(tmp_path, monkeypatch):
    from seqgen.export import default_out

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "shake").mkdir(parents=True)
    (tmp_path / "runs" / "shake" / "best.pt").touch()
    assert default_out(Path("runs/shake")) == Path("exports/shake")
    assert default_out(Path("runs/shake/best.pt")) == Path("exports/shake")


# ---- the commands ---------------------------------------------------------------------------------
def test_cli_export_then_sample_and_infill(tmp_path, corpus, monkeypatch):
    from typer.testing import CliRunner

    from seqgen.cli import app

    monkeypatch.chdir(tmp_path)
    run = make_run(tmp_path / "runs", "lstm", corpus, objective="causal")
    runner = CliRunner()
    res = runner.invoke(app, ["export", str(run)])
    assert res.exit_code == 0, res.output
    bundle = Path("exports") / run.name
    assert res.stdout.strip() == str(bundle) and (bundle / "model.onnx").exists()
    assert "largest |logit difference|" in res.stderr
    from_bundle = runner.invoke(app, ["sample", str(bundle), "--length", "30", "--temp", "0", "--prompt", "All"])
    from_run = runner.invoke(app, ["sample", str(run), "--length", "30", "--temp", "0", "--prompt", "All"])
    assert from_bundle.exit_code == 0 and from_bundle.stdout == from_run.stdout
    again = runner.invoke(app, ["export", str(run)])
    assert again.exit_code == 1 and "already exists" in again.stderr and "Traceback" not in again.output
    res = runner.invoke(app, ["infill", str(bundle), "--prefix", "a", "--suffix", "b"])
    assert res.exit_code == 1 and "objective causal" in res.stderr  # the bundle knows its objective
    res = runner.invoke(app, ["export", str(run), "--quantize", "int4"])
    assert res.exit_code == 1 and "int8" in res.stderr


@pytest.mark.slow
def test_cli_bench_json(tmp_path, corpus):
    from typer.testing import CliRunner

    from seqgen.cli import app

    run = make_run(tmp_path, "gru", corpus)
    res = CliRunner().invoke(app, ["bench", str(run), "--tokens", "20", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert {(r["engine"], r["batch"]) for r in rows} == {
        (e, b) for e in ("torch-naive", "torch", "onnx", "onnx-int8") for b in (1, 8)}
    assert all(r["tokens_per_s"] > 0 for r in rows)
    assert all(r["first_token_s"] > 0 for r in rows if r["batch"] == 1 and r["engine"].startswith("onnx"))


@pytest.mark.slow
def test_dynamo_exporter_for_the_transformer(tmp_path, corpus):
    """The generic dynamo export (the fused graph's fallback) keeps the model's stacked KV cache."""
    from seqgen.export import export_run

    run = make_run(tmp_path, "transformer", corpus)
    report = export_run(run, tmp_path / "b", exporter="dynamo", loss_tokens=0)
    assert report.exporter == "dynamo" and report.max_abs_diff < 1e-4
    meta = json.loads((tmp_path / "b" / "seqgen.json").read_text())
    assert [s["name"] for s in meta["state"]] == ["k", "v", "pos"]
    assert meta["state"][0]["shape"] == [1, "batch", 2, "past", 16]


def test_music_bundle_imports_no_torch_nor_music21(tmp_path):
    """A bundle with the MIDI tokenizer (what `seqgen compose` opens) stays torch- and music21-free."""
    import torch

    from seqgen import checkpoint as ckpt_io
    from seqgen.config import TrainConfig
    from seqgen.export import export_run
    from seqgen.models import build_model, make_config

    midi = pytest.importorskip("seqgen.tokenizers.midi")
    tok = midi.MidiTokenizer()
    torch.manual_seed(0)
    model = build_model(make_config("lstm", tok.vocab_size, "tiny", mid_id=tok.mid_id))
    ckpt_io.save(ckpt_io.Checkpoint(model=model, tokenizer=tok, train=TrainConfig(window=WINDOW)),
                 tmp_path / "run" / ckpt_io.BEST)
    export_run(tmp_path / "run", tmp_path / "bundle", loss_tokens=0)
    code = (
        "import sys, numpy as np\n"
        "from seqgen.engines.load import open_generator\n"
        "from seqgen.sampling import generate\n"
        f"g = open_generator({str(tmp_path / 'bundle')!r})\n"
        "assert type(g.tokenizer).__name__ == 'MidiTokenizer'\n"
        "ids = list(generate(g.engine, np.zeros((2, 3), np.int64), 5, rng=np.random.default_rng(0)))\n"
        "assert len(ids) == 5\n"
    )
    assert heavy_modules_after(code) == "[]"


@pytest.mark.slow
def test_kv_buffer_stays_bounded_and_matches_torch_over_many_trims(tmp_path, corpus):
    """The GroupQueryAttention graph writes a fixed-capacity cache in place; each time it fills,
    the engine keeps the last window - 1 positions, their keys rotated back, and the logits
    still match torch's sliding window step after step."""
    import torch

    from seqgen.engines.onnx_engine import KvBufferEngine, open_bundle
    from seqgen.export import export_run

    run, bundle = make_run(tmp_path, "transformer", corpus), tmp_path / "gqa"
    report = export_run(run, bundle, exporter="gqa", loss_tokens=0)
    assert report.exporter == "gqa" and report.max_abs_diff < 1e-4
    meta = json.loads((bundle / "seqgen.json").read_text())
    assert meta["format"] == 2 and meta["inputs"][-2:] == ["seqlens_k", "total_sequence_length"]
    assert all(s["buffer"]["capacity"] == s["shape"][2] >= WINDOW for s in meta["state"])
    engine = open_bundle(bundle).engine
    assert isinstance(engine, KvBufferEngine) and engine.keep == WINDOW - 1
    model = _model(run).eval()
    rng = np.random.default_rng(3)
    state, state_t, lengths, worst = engine.start(2), None, [], 0.0
    for i in range(120):
        x = rng.integers(0, model.config.vocab_size - 4, (2, 1 if i % 7 else 3))
        logits, state = engine.forward(x, state)
        with torch.no_grad():
            want, state_t = model(torch.from_numpy(x), state_t)
        worst = max(worst, float(np.abs(logits - want.numpy()).max()))
        lengths.append(state.length)
    assert worst < 1e-4
    assert max(lengths) <= engine.capacity and min(lengths[-20:]) >= engine.keep
    assert lengths.count(engine.keep + 1) >= 3  # it trimmed several times

    # rows that read different lengths share one buffer, each at its own length, as each alone;
    # a row that leaves frees its place for the next to join, with no new buffers
    from seqgen.export import stacked_difference

    assert engine.stackable and stacked_difference(model, engine) < 1e-4
    prompts = [rng.integers(0, model.config.vocab_size - 4, (1, n)) for n in (5, 2 * WINDOW, 9)]
    with torch.no_grad():
        want = [model(torch.from_numpy(p), None)[1] for p in prompts]
    alone = [engine.forward(p, engine.start(1))[1] for p in prompts]
    read = [st.length for st in alone]
    assert read[1] < 2 * WINDOW  # the long prompt was cut to the window
    pool = engine.stack(alone[:2])
    buffers = [id(a) for a in pool.arrays]
    pool = engine.stack([engine.select(pool, [1]), alone[2]])
    assert [id(a) for a in pool.arrays] == buffers and pool.lengths.tolist() == read[1:]
    for _ in range(3):
        x = rng.integers(0, model.config.vocab_size - 4, (2, 1))
        logits, pool = engine.forward(x, pool)
        with torch.no_grad():
            for row, k in enumerate((1, 2)):
                got, want[k] = model(torch.from_numpy(x[row : row + 1]), want[k])
                assert np.abs(logits[row : row + 1] - got.numpy()).max() < 1e-4


def test_sliding_kv_cache_stays_bounded(exported):
    """The fused transformer graph appends to its cache; the engine cuts it to the window."""
    from seqgen.engines.onnx_engine import open_bundle

    _, bundle, _ = exported("transformer")
    engine = open_bundle(bundle).engine
    trim = engine.layout[0]["trim"]
    assert trim["keep"] == WINDOW - 1
    state = engine.start(2)
    lengths = []
    for i in range(60):
        _, state = engine.advance(np.full((2, 1), i % 20, dtype=np.int64), state)
        lengths.append(state[0].shape[2])
    assert max(lengths) <= trim["keep"] + trim["slack"] and min(lengths[-20:]) >= trim["keep"]
    assert state[-2].tolist() == [60, 60]  # pos counts every token read, per row
    assert state[-1].tolist() == [0, 0]  # rows alone: no padding


def test_rows_of_different_lengths_step_together_as_each_alone(exported):
    """Stacked transformer rows (caches padded at the front to the longest) give each row the
    logits torch gives it alone, across the window's cuts; without the padding count they do not."""
    from seqgen import checkpoint as ckpt_io
    from seqgen.engines.onnx_engine import open_bundle
    from seqgen.export import stacked_difference

    run, bundle, _ = exported("transformer")
    engine = open_bundle(bundle).engine
    model = ckpt_io.load(run / "best.pt").model
    assert engine.stackable and stacked_difference(model, engine) < 1e-4
    stack = engine.stack
    engine.stack = lambda states: (*stack(states)[:-1], np.zeros(len(states), dtype=np.int64))  # padding unseen
    assert stacked_difference(model, engine) > 1e-2

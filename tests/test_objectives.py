import numpy as np
import pytest

from seqgen.objectives import FimIds, apply_objective, fim_rows, fim_transform, infill_prompt

IDS = FimIds(pre=100, suf=101, mid=102, eot=103)


def fim_inverse(seq: np.ndarray, ids: FimIds) -> np.ndarray:
    """The original tokens of a PSM or SPM example (prefix + middle + suffix + rest)."""
    seq = np.asarray(seq)
    if len(seq) < 4 or seq[0] != ids.pre:
        raise ValueError("not a fill-in-the-middle sequence: it must start with <pre>")
    mid_at = int(np.flatnonzero(seq == ids.mid)[0])
    end = np.flatnonzero(seq == ids.eot)
    stop = int(end[0]) if len(end) else len(seq)
    rest = seq[stop + 1 :]
    if seq[1] == ids.suf:  # SPM: <pre><suf> suffix <mid> prefix middle <eot>
        suffix = seq[2:mid_at]
        return np.concatenate((seq[mid_at + 1 : stop], suffix, rest))
    suf_at = int(np.flatnonzero(seq == ids.suf)[0])
    prefix, suffix = seq[1:suf_at], seq[suf_at + 1 : mid_at]
    return np.concatenate((prefix, seq[mid_at + 1 : stop], suffix, rest))


@pytest.mark.parametrize("seed", range(20))
def test_fim_transform_keeps_length_and_inverts(seed):
    rng = np.random.default_rng(seed)
    window = np.arange(40)
    seq = fim_transform(window, IDS, rng)
    assert len(seq) == len(window)
    assert seq[0] == IDS.pre
    assert sorted(seq[np.isin(seq, list(IDS.__dict__.values()))].tolist()) == [100, 101, 102, 103]
    np.testing.assert_array_equal(fim_inverse(seq, IDS), window[: len(window) - 4])


def test_contexts_range_from_short_to_most_of_the_window():
    rng = np.random.default_rng(0)
    eot_at = [int(np.flatnonzero(fim_transform(np.arange(64), IDS, rng) == IDS.eot)[0]) for _ in range(300)]
    assert min(eot_at) < 16 and max(eot_at) == 63


def test_both_orders_occur():
    rng = np.random.default_rng(0)
    spm = sum(fim_transform(np.arange(30), IDS, rng)[1] == IDS.suf for _ in range(200))
    assert 60 < spm < 140


def test_psm_prompt_layout():
    p = infill_prompt(np.array([1, 2]), np.array([3]), IDS)
    assert p.tolist() == [100, 1, 2, 101, 3, 102]


def test_fim_rows_and_batch_transform():
    assert fim_rows("causal", 0.5, 8) == 0
    assert fim_rows("infill", 0.5, 8) == 8
    assert fim_rows("mixed", 0.5, 8) == 4
    x = np.tile(np.arange(20), (4, 1))
    out = apply_objective(x.copy(), 2, IDS, np.random.default_rng(0))
    np.testing.assert_array_equal(out[:2], x[:2])
    assert (out[2:, 0] == IDS.pre).all()

import numpy as np
import pytest

from seqgen.errors import ConfigError
from seqgen.sampling import filtered_probs, generate, sample_next

LOGITS = np.log(np.array([[0.5, 0.25, 0.15, 0.1]]))


def test_temperature_zero_is_argmax():
    logits = np.array([[0.1, 3.0, -1.0], [5.0, 0.0, 4.9]])
    np.testing.assert_array_equal(sample_next(logits, temperature=0), [1, 0])


def test_top_k_keeps_k():
    p = filtered_probs(LOGITS, 1.0, top_k=2)
    assert np.count_nonzero(p) == 2
    np.testing.assert_allclose(p[0, :2], [0.5 / 0.75, 0.25 / 0.75])
    rng = np.random.default_rng(0)
    draws = {int(sample_next(LOGITS, 1.0, top_k=2, rng=rng)[0]) for _ in range(200)}
    assert draws == {0, 1}


def test_top_p_keeps_smallest_set_reaching_p():
    # 0.5 + 0.25 = 0.75 >= 0.7: two tokens; 0.75 < 0.8 needs the third.
    assert np.count_nonzero(filtered_probs(LOGITS, 1.0, top_p=0.7)) == 2
    assert np.count_nonzero(filtered_probs(LOGITS, 1.0, top_p=0.8)) == 3
    assert np.count_nonzero(filtered_probs(LOGITS, 1.0, top_p=0.4)) == 1


def test_temperature_sharpens_and_flattens():
    cold = filtered_probs(LOGITS, 0.5)
    hot = filtered_probs(LOGITS, 2.0)
    assert cold[0, 0] > 0.5 > hot[0, 0]


def test_seed_repeats_output():
    logits = np.random.default_rng(1).normal(size=(3, 50))
    a = [sample_next(logits, 1.0, rng=np.random.default_rng(7)) for _ in range(1)]
    b = [sample_next(logits, 1.0, rng=np.random.default_rng(7)) for _ in range(1)]
    np.testing.assert_array_equal(a, b)
    draws = {tuple(sample_next(logits, 1.0, rng=np.random.default_rng(s))) for s in range(10)}
    assert len(draws) > 1


def test_sampling_follows_the_distribution():
    rng = np.random.default_rng(0)
    draws = np.array([sample_next(np.tile(LOGITS, (1000, 1)), 1.0, rng=rng) for _ in range(5)]).ravel()
    freq = np.bincount(draws, minlength=4) / len(draws)
    np.testing.assert_allclose(freq, [0.5, 0.25, 0.15, 0.1], atol=0.02)


@pytest.mark.parametrize(
    "kwargs",
    [dict(temperature=-1), dict(temperature=float("nan")), dict(top_k=0), dict(top_p=1.5), dict(top_p=0.0)],
    ids=["temp-1", "temp-nan", "topk0", "topp1.5", "topp0"],
)
def test_bad_options_raise(kwargs):
    args = dict(temperature=1.0, top_k=None, top_p=None) | kwargs
    with pytest.raises(ConfigError):
        sample_next(LOGITS, args["temperature"], args["top_k"], args["top_p"])


class CountingEngine:
    """Predicts (last id + 1) mod V; counts tokens it is fed, to prove one step per token."""

    def __init__(self, vocab=10):
        self.vocab, self.fed = vocab, 0

    def start(self, batch):
        return None

    def advance(self, ids, state):
        self.fed += ids.shape[1]
        logits = np.full((ids.shape[0], self.vocab), -10.0)
        logits[np.arange(ids.shape[0]), (ids[:, -1] + 1) % self.vocab] = 10.0
        return logits, state


def test_generate_costs_one_step_per_token_and_respects_stop_and_bans():
    eng = CountingEngine()
    out = [int(i[0]) for i in generate(eng, np.array([[1, 2, 3]]), 5, temperature=0)]
    assert out == [4, 5, 6, 7, 8]
    assert eng.fed == 3 + 4  # prompt once, then one token per new step (none after the last)
    stopped = [int(i[0]) for i in generate(CountingEngine(), np.array([[1]]), 10, temperature=0, stop_id=4)]
    assert stopped == [2, 3, 4]
    banned = [int(i[0]) for i in generate(CountingEngine(), np.array([[1]]), 1, temperature=0, banned=[2])]
    assert banned != [2]

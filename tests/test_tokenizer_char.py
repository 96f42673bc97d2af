import numpy as np
import pytest

from seqgen.errors import TokenizerError
from seqgen.tokenizers import SPECIALS, CharTokenizer, tokenizer_from_dict


def test_round_trip_and_vocab():
    text = "Hello, wörld! ♪\nsecond line"
    tok = CharTokenizer.from_chars(text)
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.vocab_size == len(set(text)) + len(SPECIALS)
    assert ids.max() < len(set(text))


def test_sentinels_are_outside_the_characters_and_decode_to_nothing():
    tok = CharTokenizer.from_chars("abc")
    assert {tok.pre_id, tok.suf_id, tok.mid_id, tok.eot_id} == {3, 4, 5, 6}
    assert tok.decode([0, tok.mid_id, 1, tok.eot_id]) == "ab"


def test_unknown_characters_are_named():
    tok = CharTokenizer.from_chars("abc")
    with pytest.raises(TokenizerError, match="'x'.*'z'"):
        tok.encode("abxz")


def test_dict_round_trip_and_equality():
    tok = CharTokenizer.from_chars("hello")
    again = tokenizer_from_dict(tok.to_dict())
    assert again == tok
    assert again != CharTokenizer.from_chars("help")
    np.testing.assert_array_equal(again.encode("hole"), tok.encode("hole"))


def test_default_prompt_prefers_newline():
    assert CharTokenizer.from_chars("ab\n").default_prompt() == "\n"
    assert CharTokenizer.from_chars("ba").default_prompt() == "a"

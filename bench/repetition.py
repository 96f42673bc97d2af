"""What min-p and the repetition guards do to samples: loops and made-up words, per setting.

    python bench/repetition.py exports/shake --corpus tinyshakespeare.txt
    python bench/repetition.py runs/shake --corpus tinyshakespeare.txt --samples 20 --chars 2000

For each setting, --samples samples of --chars characters from a newline (seeds 0..N-1):
- repeated 20-grams: the share of 20-character windows that already occurred earlier in the
  same sample (a loop repeats whole lines);
- words from the corpus: the share of the sampled words (runs of letters) found in the corpus;
- nats/char: the model's own loss on its samples (low = the model is sure; loops score low).
The first row gives the same figures for pieces of the corpus itself.
"""

from __future__ import annotations

import argparse
import re

import numpy as np

SETTINGS = [
    ("temp 1.0", {"temperature": 1.0}),
    ("temp 1.0, min-p 0.05", {"temperature": 1.0, "min_p": 0.05}),
    ("temp 1.0, min-p 0.1", {"temperature": 1.0, "min_p": 0.1}),
    ("temp 1.0, top-p 0.9", {"temperature": 1.0, "top_p": 0.9}),
    ("temp 0.8 (the default)", {}),
    ("temp 0.8, min-p 0.1", {"min_p": 0.1}),
    ("temp 0.3", {"temperature": 0.3}),
    ("temp 0.3, repetition-penalty 1.3", {"temperature": 0.3, "repetition_penalty": 1.3}),
    ("temp 0.3, no-repeat-ngram 12", {"temperature": 0.3, "no_repeat_ngram": 12}),
    ("temp 0.3, no-repeat-ngram 20", {"temperature": 0.3, "no_repeat_ngram": 20}),
    ("greedy (temp 0)", {"temperature": 0.0}),
    ("greedy, repetition-penalty 1.2", {"temperature": 0.0, "repetition_penalty": 1.2}),
    ("greedy, repetition-penalty 1.5", {"temperature": 0.0, "repetition_penalty": 1.5}),
    ("greedy, repetition-penalty 2", {"temperature": 0.0, "repetition_penalty": 2.0}),
    ("greedy, no-repeat-ngram 8", {"temperature": 0.0, "no_repeat_ngram": 8}),
    ("greedy, no-repeat-ngram 12", {"temperature": 0.0, "no_repeat_ngram": 12}),
    ("greedy, no-repeat-ngram 20", {"temperature": 0.0, "no_repeat_ngram": 20}),
]
WORD = re.compile(r"[A-Za-z]+")


def repeated(text: str, n: int = 20) -> float:
    seen, rep, total = set(), 0, 0
    for i in range(len(text) - n + 1):
        g = text[i:i + n]
        rep += g in seen
        total += 1
        seen.add(g)
    return rep / max(1, total)


def known_words(text: str, vocab: set[str]) -> float:
    words = WORD.findall(text)
    return sum(w.lower() in vocab for w in words) / max(1, len(words))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--corpus", required=True, help="the run's training text (for the word list)")
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--chars", type=int, default=1000)
    a = ap.parse_args()
    from seqgen.engines.load import open_generator
    from seqgen.options import SamplingOptions
    from seqgen.sampling import complete_text
    from seqgen.scoring import score_text

    gen = open_generator(a.run)
    corpus = open(a.corpus, encoding="utf-8").read()
    vocab = {w.lower() for w in WORD.findall(corpus)}
    print(f"{'setting':<34} {'repeated 20-grams':>17} {'corpus words':>12} {'nats/char':>9}")
    pieces = [corpus[i:i + a.chars] for i in np.linspace(0, len(corpus) - a.chars, a.samples).astype(int)]
    rows = [("the corpus itself", pieces)]
    for name, change in SETTINGS:
        opts = SamplingOptions(**change).check()
        texts = [complete_text(gen, gen.tokenizer.encode("\n"), a.chars, opts, np.random.default_rng(s))[0].text
                 for s in range(a.samples)]
        rows.append((name, texts))
    for name, texts in rows:
        rep = np.mean([repeated(t) for t in texts])
        words = np.mean([known_words(t, vocab) for t in texts])
        nats = np.mean([score_text(gen, "\n" + t)["nats_per_char"] for t in texts])
        print(f"{name:<34} {rep * 100:>16.1f}% {words * 100:>11.1f}% {nats:>9.3f}", flush=True)


if __name__ == "__main__":
    main()

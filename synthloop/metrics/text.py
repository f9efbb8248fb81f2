"""Text metrics on word tokens: diversity and divergence from real text.

Definitions (docs/metrics.md repeats them):
- words(t): lower-cased \\w+ runs of t.
- distinct_n: unique word n-grams / all word n-grams, pooled over the sample set.
- unigram_kl: KL(P_real || Q_samples) in nats over the union vocabulary, both
  unigram distributions add-one smoothed (scipy.stats.entropy).
- repetition: share of a text's word 3-grams that repeat an earlier 3-gram in it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

import numpy as np
from scipy.stats import entropy

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(texts: Iterable[str], n: int) -> float:
    grams = [g for t in texts for g in ngrams(words(t), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repetition(text: str, n: int = 3) -> float:
    grams = ngrams(words(text), n)
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def unigram_counts(texts: Iterable[str]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for t in texts:
        counts.update(words(t))
    return counts


def unigram_kl(real: Counter[str], samples: Counter[str]) -> float:
    vocab = sorted(set(real) | set(samples))
    if not vocab:
        return 0.0
    p = np.array([real[w] for w in vocab], dtype=float) + 1.0
    q = np.array([samples[w] for w in vocab], dtype=float) + 1.0
    return float(entropy(p / p.sum(), q / q.sum()))

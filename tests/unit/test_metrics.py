"""synthloop.metrics.text on hand-computed inputs."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from synthloop.metrics.text import distinct_n, ngrams, repetition, unigram_counts, unigram_kl, words


def test_words_lowercases_and_drops_punctuation():
    expected = ["the", "cat", "the", "hat", "über", "café", "42"]
    assert words("The cat, the HAT! Über-café 42") == expected
    assert words("  ...  ") == []


def test_ngrams():
    assert ngrams(["a", "b", "c"], 2) == [("a", "b"), ("b", "c")]
    assert ngrams(["a"], 2) == []


def test_distinct_n():
    assert distinct_n(["a b a b"], 1) == 0.5
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)
    assert distinct_n(["a b", "a b"], 2) == 0.5  # pooled over the sample set
    assert distinct_n(["a b", "c"], 2) == 1.0  # n-grams do not cross texts
    assert distinct_n([], 1) == 0.0 and distinct_n(["a"], 2) == 0.0


def test_repetition():
    assert repetition("a b c d e") == 0.0
    assert repetition("a b c a b c") == pytest.approx(1 / 4)
    assert repetition("a a a a a") == pytest.approx(2 / 3)
    assert repetition("a b") == 0.0


def test_unigram_counts():
    assert unigram_counts(["A b", "b, c"]) == Counter({"b": 2, "a": 1, "c": 1})


def test_unigram_kl_identical_is_zero():
    c = unigram_counts(["the cat sat on the mat"])
    assert unigram_kl(c, Counter(c)) == pytest.approx(0.0, abs=1e-12)
    assert unigram_kl(Counter(), Counter()) == 0.0


def test_unigram_kl_two_words_by_hand():
    # vocab [a, b]; add-one: p = [2, 1] / 3, q = [1, 2] / 3 -> KL = (1/3) ln 2
    real, samples = Counter({"a": 1}), Counter({"b": 1})
    assert unigram_kl(real, samples) == pytest.approx(math.log(2) / 3)
    p = np.array([3 + 1, 1 + 1], float)
    p /= p.sum()  # real: a x3, b x1
    q = np.array([0 + 1, 2 + 1], float)
    q /= q.sum()  # samples: b x2
    expected = float(np.sum(p * np.log(p / q)))
    assert unigram_kl(Counter({"a": 3, "b": 1}), Counter({"b": 2})) == pytest.approx(expected)


def test_unigram_kl_is_directional():
    real, samples = Counter({"a": 5, "b": 1}), Counter({"a": 1, "b": 1, "c": 4})
    assert unigram_kl(real, samples) != pytest.approx(unigram_kl(samples, real))
    assert unigram_kl(real, samples) > 0

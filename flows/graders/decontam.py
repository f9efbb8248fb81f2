"""Decontamination: how much of a sample is held-out test text, by word n-gram overlap.

A sample's contamination is the share of its word n-grams (lower-cased `\\w+` words,
as everywhere in synthloop) that occur anywhere in the real test split; a sample with
fewer than n words has no n-grams and scores 0. Dropping samples above a threshold
keeps leaked test text out of the next training set, so test perplexity is never
flattered by it.
"""

from __future__ import annotations

from ..metrics.text import ngrams, words


def ngram_set(texts: list[str], n: int) -> set[tuple[str, ...]]:
    return {g for t in texts for g in ngrams(words(t), n)}


def contamination(text: str, test: set[tuple[str, ...]], n: int) -> float:
    grams = ngrams(words(text), n)
    return sum(g in test for g in grams) / len(grams) if grams else 0.0


def decontaminate(texts: list[str], test_texts: list[str], n: int,
                  threshold: float) -> tuple[list[str | None], list[float]]:
    """Drop reason ('contaminated' or None) and contamination share of each text."""
    test = ngram_set(test_texts, n)
    shares = [contamination(t, test, n) for t in texts]
    return ["contaminated" if s > threshold else None for s in shares], shares

"""Decontamination: how much of a sample is held-out test text, by word n-gram overlap.

A sample's contamination is the share of its word n-grams (lower-cased `\\w+` words,
as everywhere in synthloop) that occur anywhere in the real test split; a sample with
fewer than n words has no n-grams and scores 0. Dropping samples above a threshold
keeps leaked test text out of the next training set, so test perplexity is never
flattered by it.
"""

from __future__ import annotations

from ..metrics.text import ngrams, words
from .base import Grader, graded
from .rules import Rule


def ngram_set(texts: list[str], n: int) -> set[tuple[str, ...]]:
    return {g for t in texts for g in ngrams(words(t), n)}


def contamination(text: str, test: set[tuple[str, ...]], n: int) -> float:
    grams = ngrams(words(text), n)
    return sum(g in test for g in grams) / len(grams) if grams else 0.0


class DecontamGrader(Grader):
    """Drops samples whose share of test-split word n-grams exceeds grade.decontam_threshold."""

    name = "decontaminate"

    def grade(self, texts):
        n = self.cfg.decontam_ngram
        test = ngram_set(self.env.test_texts, n)
        shares = [contamination(t, test, n) for t in texts]
        return graded(
            {"contamination": shares},
            "contamination",
            Rule(high=self.cfg.decontam_threshold, above="contaminated", prefer="lower"),
        )

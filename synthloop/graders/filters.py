"""Heuristic filters: length, repetition and garbage characters (pure functions on text)."""

from __future__ import annotations

import string

from ..config import GradeParams
from ..metrics.text import repetition, words
from .base import Graded, Grader
from .rules import Rule

# besides letters, digits and whitespace: ASCII punctuation and the usual typographic marks
COMMON_PUNCTUATION = frozenset(string.punctuation + "‘’“”„‚«»‹›–—―…·•¡¿°§¶€£")


def garbage(text: str) -> float:
    """Share of characters that are not letters, digits, whitespace or common punctuation
    (U+FFFD from broken bytes, control characters, symbols, emoji, ...); 0 for empty text."""
    if not text:
        return 0.0
    bad = sum(not (c.isalpha() or c.isdigit() or c.isspace() or c in COMMON_PUNCTUATION) for c in text)
    return bad / len(text)


def filter_reason(text: str, cfg: GradeParams) -> str | None:
    """The first heuristic rule that drops `text`, or None when it passes."""
    n = len(words(text))
    if n < cfg.min_words:
        return "too_short"
    if n > cfg.max_words:
        return "too_long"
    if repetition(text) > cfg.max_repetition:
        return "repetitive"
    if garbage(text) > cfg.max_garbage:
        return "garbage"
    return None


class FilterGrader(Grader):
    """Length, repetition and garbage characters (fixed bars, nothing fitted); audited on repetition."""

    name, audit_key = "filters", "repetition"

    def grade(self, texts):
        scores = {"repetition": [repetition(t) for t in texts], "garbage": [garbage(t) for t in texts]}
        return Graded(scores, [filter_reason(t, self.cfg) for t in texts], Rule(prefer="lower"))

    def score(self, texts):
        return [repetition(t) for t in texts]

    def keep(self, texts, values, rule):
        return [float(filter_reason(t, self.cfg) is None) for t in texts]

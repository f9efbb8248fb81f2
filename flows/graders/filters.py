"""Heuristic filters and the self-likelihood keep rule: pure functions on scores."""

from __future__ import annotations

import numpy as np

from ..config import GradeParams
from ..metrics.text import repetition, words


def filter_reason(text: str, cfg: GradeParams) -> str | None:
    """The first heuristic rule that drops `text`, or None when it passes."""
    n = len(words(text))
    if n < cfg.min_words:
        return "too_short"
    if n > cfg.max_words:
        return "too_long"
    if repetition(text) > cfg.max_repetition:
        return "repetitive"
    return None


def self_keep(ppl: list[float], cfg: GradeParams) -> list[bool]:
    """Keep mask for the self-grading rule on per-sample perplexities (ties broken by order)."""
    x = np.asarray(ppl, dtype=float)
    if cfg.self_rule == "none" or len(x) == 0:
        return [True] * len(x)
    if cfg.self_rule == "threshold":
        return (x <= cfg.self_max_ppl).tolist()
    if cfg.self_rule == "band":
        lo, hi = np.quantile(x, [cfg.self_band_low, cfg.self_band_high])
        return ((x >= lo) & (x <= hi)).tolist()
    k = max(1, round(cfg.self_fraction * len(x)))
    order = np.argsort(x if cfg.self_rule == "lowest" else -x, kind="stable")
    keep = np.zeros(len(x), dtype=bool)
    keep[order[:k]] = True
    return keep.tolist()

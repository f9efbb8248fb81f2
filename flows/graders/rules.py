"""Keep rules: pure functions from one grader's scores to keep masks and cut-offs.

A rule is fitted on the synthetic samples a grader sees (lowest half, a quantile band,
...); the cut-offs it fixes there are what the grader audit applies to real text
(`*_interval`, `resample_accept`), so "would this grader have kept real text" uses
exactly the bar the samples had to clear.
"""

from __future__ import annotations

import numpy as np

from ..config import GradeParams


def rank_keep(x: list[float], fraction: float, highest: bool) -> list[bool]:
    """Keep the round(fraction * n) lowest (or highest) values, at least one; ties by order."""
    x = np.asarray(x, dtype=float)
    if len(x) == 0:
        return []
    k = max(1, round(fraction * len(x)))
    order = np.argsort(-x if highest else x, kind="stable")
    keep = np.zeros(len(x), dtype=bool)
    keep[order[:k]] = True
    return keep.tolist()


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
    return rank_keep(ppl, cfg.self_fraction, highest=cfg.self_rule == "highest")


def self_interval(ppl: list[float], cfg: GradeParams) -> tuple[float, float]:
    """The perplexity interval [lo, hi] the self rule kept on these samples (inclusive)."""
    x = np.asarray(ppl, dtype=float)
    if cfg.self_rule == "none" or len(x) == 0:
        return -np.inf, np.inf
    if cfg.self_rule == "threshold":
        return -np.inf, cfg.self_max_ppl
    if cfg.self_rule == "band":
        lo, hi = np.quantile(x, [cfg.self_band_low, cfg.self_band_high])
        return float(lo), float(hi)
    kept = x[np.asarray(self_keep(ppl, cfg))]
    return (-np.inf, float(kept.max())) if cfg.self_rule == "lowest" else (float(kept.min()), np.inf)


def inside(x: list[float], interval: tuple[float, float]) -> list[bool]:
    lo, hi = interval
    x = np.asarray(x, dtype=float)
    return ((x >= lo) & (x <= hi)).tolist()


def band(real: list[float], low: float, high: float) -> tuple[float, float]:
    """The [low, high] quantiles of real documents' scores (the reference grader's band)."""
    if not real:
        raise ValueError("no real documents to take a band from")
    lo, hi = np.quantile(np.asarray(real, dtype=float), [low, high])
    return float(lo), float(hi)


def odds(p: list[float], eps: float = 1e-6) -> np.ndarray:
    """p / (1 - p), with p clipped to [eps, 1 - eps] so certain verdicts stay finite."""
    q = np.clip(np.asarray(p, dtype=float), eps, 1 - eps)
    return q / (1 - q)


def resample_scale(weights: np.ndarray, fraction: float) -> float:
    """The c for which accepting each sample with probability min(1, w / c) keeps
    `fraction` of them in expectation (rejection sampling towards the real distribution)."""
    w = np.asarray(weights, dtype=float)
    target = fraction * len(w)
    lo, hi = float(w.min()), float(w.max()) * len(w) / max(target, 1e-12) + 1.0
    if np.minimum(1.0, w / lo).sum() <= target:  # fraction 1 (or all weights equal): keep everything
        return lo
    for _ in range(200):  # expected kept count falls as c grows: bisect on c
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.minimum(1.0, w / mid).sum() > target else (lo, mid)
    return hi


def resample_accept(weights: np.ndarray, scale: float) -> np.ndarray:
    """Acceptance probability of each sample: min(1, w / c)."""
    return np.minimum(1.0, np.asarray(weights, dtype=float) / scale)


def band_reasons(values: list[float | None], interval: tuple[float, float], below: str,
                 above: str) -> list[str | None]:
    """Drop reason of each value outside [lo, hi] (None inside, or when unscored)."""
    lo, hi = interval
    return [None if v is None or lo <= v <= hi else (below if v < lo else above) for v in values]


def verifier_keep(p: list[float], rule: str, fraction: float,
                  seed: int) -> tuple[list[bool], float, float | None]:
    """Keep mask of the verifier rule on P(real), plus what the audit needs to apply it to
    other text: the lowest kept p (top) and the acceptance scale c (resample)."""
    if rule == "none" or not p:
        return [True] * len(p), 0.0, None
    if rule == "top":
        keep = rank_keep(p, fraction, highest=True)
        return keep, min(x for x, k in zip(p, keep) if k), None
    w = odds(p)
    scale = resample_scale(w, fraction)
    u = np.random.default_rng(seed).random(len(p))
    return (u < resample_accept(w, scale)).tolist(), 0.0, scale


def verifier_real_keep(p: list[float], rule: str, cut: float, scale: float | None) -> list[float]:
    """Keep probability of other text (the audit's real documents) under the fitted verifier rule."""
    if rule == "top":
        return [float(x >= cut) for x in p]
    if rule == "resample" and scale is not None:
        return resample_accept(odds(p), scale).tolist()
    return [1.0] * len(p)


def judge_reasons(scores: list[float | None], rule: str, min_score: float, fraction: float,
                  unparsed: str) -> tuple[list[str | None], float]:
    """Drop reasons for judge scores, and the lowest score kept (what the audit applies to real text).

    threshold: keep scores >= min_score; top: keep the `fraction` highest parsed scores
    (ties by order). A verdict without a score (unparsed, or the request failed) is kept
    or dropped (judge_unparsed) per `unparsed`, whatever the rule.
    """
    parsed = [i for i, s in enumerate(scores) if s is not None]
    if rule == "top" and parsed:
        keep = rank_keep([scores[i] for i in parsed], fraction, highest=True)
        kept = {i for i, k in zip(parsed, keep) if k}
        cut = min(scores[i] for i in kept)
    else:
        kept, cut = {i for i in parsed if scores[i] >= min_score}, min_score
    unscored = None if unparsed == "keep" else "judge_unparsed"
    return [unscored if s is None else (None if i in kept else "judge_low") for i, s in enumerate(scores)], cut

"""Keep rules: a grader fits a `Rule` once, then the same rule decides for samples and real text.

A rule keeps a text whose score lies in [low, high] (inclusive), and, for resampling,
keeps it with probability min(1, odds(score) / scale). Its cut-offs come from the
samples a grader sees (the k-th best score, quantiles) or from real text (the
reference band); `keep_prob` applies them to any scores, which is how the grader
audit asks "would this grader have kept real text" with exactly the bar the samples
had to clear. Rank rules ("keep the best fraction") become "keep scores at least as
good as the fraction-th best": tied scores at the cut are all kept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Values = Sequence[float | None]


@dataclass(frozen=True)
class Rule:
    low: float = -math.inf
    high: float = math.inf
    below: str | None = None  # drop reason of a score below `low`
    above: str | None = None  # drop reason of a score above `high`
    unscored: str | None = None  # drop reason of a text without a score (None: kept)
    scale: float | None = None  # resample: keep with probability min(1, odds(score) / scale)
    reason: str | None = None  # drop reason of a resampling rejection
    seed: int = 0  # resampling draw (samples only; real text gets the probability)
    prefer: str = "higher"  # which scores the grader likes: higher, lower, or centre
    centre: float = 0.0  # prefer = centre: log-score the grader likes most


def _array(values: Values) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in values], dtype=float)


def keep_prob(rule: Rule, values: Values) -> list[float]:
    """Probability that the rule keeps a text with each score (0 or 1 unless resampling)."""
    x = _array(values)
    inside = (x >= rule.low) & (x <= rule.high)
    p = np.where(np.isnan(x), float(rule.unscored is None), inside.astype(float))
    if rule.scale is not None:
        p = p * np.where(np.isnan(x), 1.0, np.minimum(1.0, odds(np.nan_to_num(x, nan=0.5)) / rule.scale))
    return p.tolist()


def decide(rule: Rule, values: Values) -> list[str | None]:
    """The drop reason of each sample (None = kept); a resampling rule draws with its seed."""
    out: list[str | None] = []
    for v in values:
        if v is None:
            out.append(rule.unscored)
        else:
            out.append(rule.below if v < rule.low else rule.above if v > rule.high else None)
    if rule.scale is not None:
        u = np.random.default_rng(rule.seed).random(len(out))
        accept = np.minimum(1.0, odds(np.nan_to_num(_array(values), nan=0.5)) / rule.scale)
        out = [r if r is not None or u[i] < accept[i] else rule.reason for i, r in enumerate(out)]
    return out


def preference(rule: Rule, values: Values) -> np.ndarray:
    """Scores oriented so that higher = the grader likes it more (NaN for unscored texts)."""
    x = _array(values)
    if rule.prefer == "lower":
        return -x
    if rule.prefer == "centre":
        return -np.abs(np.log(x) - rule.centre)
    return x


def rank_cut(values: Values, fraction: float, highest: bool) -> float:
    """The round(fraction * n)-th best score (at least the best one); n counts scored values."""
    x = np.sort(_array(values)[~np.isnan(_array(values))])
    if not len(x):
        return -math.inf if highest else math.inf
    k = max(1, round(fraction * len(x)))
    return float(x[-k] if highest else x[k - 1])


def quantiles(values: Values, low: float, high: float) -> tuple[float, float]:
    """The [low, high] quantiles of the scored values (numpy's linear interpolation)."""
    x = _array(values)
    x = x[~np.isnan(x)]
    if not len(x):
        raise ValueError("no scored values to take quantiles of")
    lo, hi = np.quantile(x, [low, high])
    return float(lo), float(hi)


def log_median(values: Values) -> float:
    x = _array(values)
    x = x[~np.isnan(x)]
    return float(np.median(np.log(x))) if len(x) else 0.0


def odds(p, eps: float = 1e-6) -> np.ndarray:
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

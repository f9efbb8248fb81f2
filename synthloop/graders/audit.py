"""The grader audit: how each grader treats held-out real text next to the samples.

Every generation each audited grader also scores the same real test documents (cut
to sample length). Scores are compared after orienting them as the grader's
preference ("higher = the grader likes it more", e.g. -perplexity for a self-grader
that keeps the most likely samples, P(real) for the verifier):

- auc: ROC AUC of telling real from synthetic by that preference = the chance that
  the grader prefers a random real document to a random sample. 1: it ranks all
  real text first; 0.5: it cannot tell them apart; below 0.5: it prefers
  synthetic text (a self-grader rewarding its own degenerate text).
- real_keep: share of the real documents the grader's keep rule would keep, with the
  cut-offs the rule fixed on the samples (a grader that rejects real text is
  miscalibrated); synth_keep: the share of samples it kept.
- mean and p10/p50/p90 of the raw score, real and synthetic.
- corr_A_B: Spearman rank correlation of two graders' preferences on the samples
  both scored (agreement; 1 = same ranking).
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np

QUANTILES = (10, 50, 90)


def _finite(values) -> np.ndarray:
    x = np.asarray([np.nan if v is None else v for v in values], dtype=float)
    return x[np.isfinite(x)]


def auc(real_pref, synth_pref) -> float | None:
    """P(real preferred over synthetic) with ties counting half; None without both classes."""
    from sklearn.metrics import roc_auc_score

    real, synth = _finite(real_pref), _finite(synth_pref)
    if not len(real) or not len(synth):
        return None
    labels = np.r_[np.ones(len(real)), np.zeros(len(synth))]
    return float(roc_auc_score(labels, np.r_[real, synth]))


def spearman(a, b) -> float | None:
    """Spearman correlation of paired values (pairs with a missing side dropped); None when
    fewer than 3 pairs or either side is constant."""
    from scipy.stats import spearmanr

    x = np.asarray([np.nan if v is None else v for v in a], dtype=float)
    y = np.asarray([np.nan if v is None else v for v in b], dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return None
    return float(spearmanr(x[ok], y[ok]).statistic)


def grader_stats(name: str, real, synth, real_pref, synth_pref, real_keep, synth_keep) -> dict[str, float]:
    """Flat audit keys of one grader (`audit_<name>_*`); undefined values are left out."""
    out: dict[str, float | None] = {
        "auc": auc(real_pref, synth_pref),
        "real_keep": float(np.mean(real_keep)) if len(real_keep) else None,
        "synth_keep": float(np.mean(synth_keep)) if len(synth_keep) else None,
    }
    for side, values in (("real", real), ("synth", synth)):
        x = _finite(values)
        out[f"n_{side}"] = float(len(x))
        out[f"{side}_mean"] = float(x.mean()) if len(x) else None
        for q in QUANTILES:
            out[f"{side}_p{q}"] = float(np.percentile(x, q)) if len(x) else None
    return {f"audit_{name}_{k}": v for k, v in out.items() if v is not None and math.isfinite(v)}


def correlations(prefs: dict[str, dict[str, float | None]]) -> dict[str, float]:
    """`audit_corr_<a>_<b>` for every pair of graders (in step order), on shared sample ids."""
    out = {}
    for a, b in combinations(prefs, 2):
        ids = sorted(set(prefs[a]) & set(prefs[b]))
        rho = spearman([prefs[a][i] for i in ids], [prefs[b][i] for i in ids])
        if rho is not None:
            out[f"audit_corr_{a}_{b}"] = rho
    return out

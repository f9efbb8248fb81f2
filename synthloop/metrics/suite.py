"""More text metrics on word tokens (synthloop.metrics.text.words): diversity, tails, shape.

Definitions:
- type_token_ratio: unique words / all words, pooled over the texts.
- self_bleu: mean over the non-empty texts of sacrebleu sentence BLEU (effective order,
  exp smoothing, 13a tokenizer, n-grams up to n_max) of each text against all the other
  non-empty texts as references, on a 0-1 scale; optionally over a seeded random subset.
- unigram_js: Jensen-Shannon divergence in nats between the two unigram distributions
  over the union vocabulary, unsmoothed (0 identical, ln 2 disjoint).
- rare_types / rare_coverage: word types seen 1..max_count times in the real text, and
  the share of them that appear anywhere in the texts.
- zipf_slope: least-squares slope of log frequency against log rank over the `top`
  most frequent types (about -1 for natural text).
- quantiles / log_histogram: summaries of a per-sample value distribution (perplexity).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
from sacrebleu.metrics import BLEU
from sacrebleu.metrics.helpers import extract_all_word_ngrams
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
from scipy.spatial.distance import jensenshannon

from .text import words


def type_token_ratio(texts: Iterable[str]) -> float:
    tokens = [w for t in texts for w in words(t)]
    return len(set(tokens)) / len(tokens) if tokens else 0.0


def self_bleu(texts: Sequence[str], n_max: int = 4, subsample: int | None = None, seed: int = 0) -> float:
    """Mean sentence BLEU (0-1) of each non-empty text against all other non-empty texts.

    Empty (or whitespace-only) texts are dropped first, then `subsample` of the rest are
    drawn with random.Random(seed).sample; hypotheses and references both come from that
    subset, so keep the number of texts fixed when comparing runs (more references, more
    matches). Equal to averaging BLEU(effective_order=True).sentence_score(text, others),
    but each text is tokenized once and the reference counts (the max over the other
    texts) come from each n-gram's two largest counts: linear instead of quadratic.
    """
    pool = [t for t in texts if t.strip()]
    if subsample is not None and subsample < len(pool):
        pool = random.Random(seed).sample(pool, subsample)
    if len(pool) < 2:
        return 0.0
    tokenize = Tokenizer13a()
    grams, lens = zip(*(extract_all_word_ngrams(tokenize(t.rstrip()), 1, n_max) for t in pool))
    best: dict[tuple[str, ...], tuple[int, int, int]] = {}  # gram -> (top, owner, second)
    for i, counts in enumerate(grams):
        for g, c in counts.items():
            top, owner, second = best.get(g, (0, -1, 0))
            if c > top:
                best[g] = (c, i, top)
            elif c > second:
                best[g] = (top, owner, c)
    scores = []
    for i, counts in enumerate(grams):
        correct, total = [0] * n_max, [0] * n_max
        for g, c in counts.items():
            top, owner, second = best[g]
            total[len(g) - 1] += c
            correct[len(g) - 1] += min(c, second if owner == i else top)
        others = lens[:i] + lens[i + 1 :]
        ref_len = min(others, key=lambda r: (abs(lens[i] - r), r))  # closest, then shorter
        scores.append(
            BLEU.compute_bleu(
                correct, total, lens[i], ref_len, smooth_method="exp", effective_order=True, max_ngram_order=n_max
            ).score
        )
    return float(np.mean(scores)) / 100.0


def unigram_js(real: Counter[str], samples: Counter[str]) -> float:
    vocab = sorted(set(real) | set(samples))
    p = np.array([real[w] for w in vocab], dtype=float)
    q = np.array([samples[w] for w in vocab], dtype=float)
    if p.sum() <= 0 or q.sum() <= 0:
        return 0.0 if p.sum() == q.sum() else math.log(2)  # one side empty: disjoint
    return float(jensenshannon(p / p.sum(), q / q.sum(), base=math.e) ** 2)


def rare_types(real: Counter[str], max_count: int = 5) -> set[str]:
    return {w for w, c in real.items() if 1 <= c <= max_count}


def rare_coverage(rare: set[str], texts: Iterable[str]) -> float:
    if not rare:
        return 0.0
    seen = {w for t in texts for w in words(t)}
    return len(rare & seen) / len(rare)


def zipf_slope(counts: Counter[str], top: int = 1000) -> float:
    freqs = sorted((c for c in counts.values() if c > 0), reverse=True)[:top]
    if len(freqs) < 3:
        return 0.0
    ranks = np.arange(1, len(freqs) + 1, dtype=float)
    slope, _ = np.polyfit(np.log(ranks), np.log(np.array(freqs, dtype=float)), 1)
    return float(slope)


def _q_key(q: float) -> str:
    pct = q * 100
    return f"p{round(pct)}" if abs(pct - round(pct)) < 1e-9 else f"p{pct:g}"


def quantiles(values: Iterable[float], qs: Sequence[float] = (0.1, 0.5, 0.9)) -> dict[str, float]:
    """{"p10": .., "p50": .., "p90": ..} (numpy linear interpolation); 0.0 each if no values."""
    arr = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if arr.size == 0:
        return {_q_key(q): 0.0 for q in qs}
    return {_q_key(q): float(np.quantile(arr, q)) for q in qs}


def log_bin_edges(lo: float, hi: float, bins: int) -> list[float]:
    if not (0 < lo < hi) or bins < 1:
        raise ValueError(f"need 0 < lo < hi and bins >= 1, got lo={lo}, hi={hi}, bins={bins}")
    return [float(e) for e in np.geomspace(lo, hi, bins + 1)]


def log_histogram(values: Iterable[float], lo: float, hi: float, bins: int) -> list[int]:
    """Counts over `bins` log-spaced bins from lo to hi (log_bin_edges); values below lo
    fall in the first bin, above hi in the last, NaN is dropped."""
    edges = log_bin_edges(lo, hi, bins)
    arr = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    counts, _ = np.histogram(np.clip(arr, lo, hi), bins=edges)
    return [int(c) for c in counts]

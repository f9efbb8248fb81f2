"""The sample metrics of one generation: diversity, divergence, tails and bias against real text (pure).

Pooled metrics depend on how many words they pool (real text cut from 81 to 41 words per document
moves distinct-2 from 0.688 to 0.759), so they are computed on a fixed word budget: the samples,
pooled in order, cut at `budget` words, and real text cut to the same budget beside them (the
`_real` metrics: what real text scores at that size).
"""

from __future__ import annotations

from random import Random

from . import bias, suite
from .text import _WORD, distinct_n, unigram_counts, unigram_kl, words


def sample_metrics(texts: list[str], real_test: list[str], real_train: list[str], budget: int = 0) -> dict[str, float]:
    """Diversity, divergence, tail and bias metrics of samples against real text (pure); `budget`:
    the words they are computed on (0 = every word of the samples)."""
    test_counts, train_counts = unigram_counts(real_test), unigram_counts(real_train)
    rare = suite.rare_types(train_counts)
    n_words = sum(len(words(t)) for t in texts)
    size = budget or n_words
    cut = cut_words(texts, size)
    # the real reference at the same budget: tales drawn at random (the same ones every generation);
    # from the training split for the divergences from the test split, from the test split for the
    # coverage of the training split's rare words
    ref = cut_words(Random(0).sample(real_train, len(real_train)), size)
    ref_test = cut_words(Random(0).sample(real_test, len(real_test)), size)
    return {
        **pooled(cut, test_counts),
        **{f"{k}_real": v for k, v in pooled(ref, test_counts).items()},
        "rare_coverage": suite.rare_coverage(rare, cut),
        "rare_coverage_real": suite.rare_coverage(rare, ref_test),
        **bias.bias_metrics(real_train, cut, bias.character_names(real_train)),
        "sample_words_mean": n_words / len(texts),
        "metric_words": sum(len(words(t)) for t in cut),
        "empty_share": sum(not t.strip() for t in texts) / len(texts),
    }


POOLED = ("distinct_1", "distinct_2", "distinct_3", "ttr", "self_bleu", "unigram_kl", "unigram_js", "zipf_slope")


def pooled(texts: list[str], test_counts) -> dict[str, float]:
    """The POOLED metrics of the texts taken together."""
    counts = unigram_counts(texts)
    return {
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "distinct_3": distinct_n(texts, 3),
        "ttr": suite.type_token_ratio(texts),
        "self_bleu": suite.self_bleu(texts),
        "unigram_kl": unigram_kl(test_counts, counts),
        "unigram_js": suite.unigram_js(test_counts, counts),
        "zipf_slope": suite.zipf_slope(counts),
    }


def cut_words(texts: list[str], budget: int) -> list[str]:
    """The texts in order until they hold `budget` words (synthloop.metrics.text.words), the last
    one cut right after its budget-th word; all of them when they hold fewer."""
    out, total = [], 0
    for t in texts:
        if total >= budget:
            break
        ends = [m.end() for m in _WORD.finditer(t)]
        n = len(ends)
        if total + n > budget:
            t, n = t[: ends[budget - total - 1]], budget - total
        out.append(t)
        total += n
    return out

"""The sample metrics of one generation: diversity, divergence, tails and bias against real text (pure)."""

from __future__ import annotations

from . import bias, suite
from .text import distinct_n, unigram_counts, unigram_kl, words


def sample_metrics(texts: list[str], real_test: list[str], real_train: list[str]) -> dict[str, float]:
    """Diversity, divergence, tail and bias metrics of samples against real text (pure)."""
    test_counts, sample_counts = unigram_counts(real_test), unigram_counts(texts)
    train_counts = unigram_counts(real_train)
    rare = suite.rare_types(train_counts)
    n_words = sum(sample_counts.values())
    real_slice = _first_words(real_test, n_words)  # real text of the samples' size, for scale
    return {
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "distinct_3": distinct_n(texts, 3),
        "ttr": suite.type_token_ratio(texts),
        "self_bleu": suite.self_bleu(texts),
        "unigram_kl": unigram_kl(test_counts, sample_counts),
        "unigram_js": suite.unigram_js(test_counts, sample_counts),
        "rare_coverage": suite.rare_coverage(rare, texts),
        "rare_coverage_real": suite.rare_coverage(rare, real_slice),
        "zipf_slope": suite.zipf_slope(sample_counts),
        **bias.bias_metrics(real_train, texts, bias.character_names(real_train)),
        "sample_words_mean": n_words / len(texts),
        "empty_share": sum(not t.strip() for t in texts) / len(texts),
    }


def _first_words(texts: list[str], n: int) -> list[str]:
    out, total = [], 0
    for t in texts:
        if total >= n:
            break
        out.append(t)
        total += len(words(t))
    return out

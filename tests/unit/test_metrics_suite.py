"""synthloop.metrics.suite and synthloop.metrics.bias on hand-computed inputs."""

from __future__ import annotations

import math
import random
from collections import Counter

import numpy as np
import pytest
from sacrebleu.metrics import BLEU

from synthloop.metrics.bias import bias_metrics, character_names, name_counts, pronoun_counts, total_variation
from synthloop.metrics.suite import (
    log_bin_edges,
    log_histogram,
    quantiles,
    rare_coverage,
    rare_types,
    self_bleu,
    type_token_ratio,
    unigram_js,
    zipf_slope,
)

# ---- suite -------------------------------------------------------------------------------


def test_type_token_ratio():
    assert type_token_ratio(["a b a"]) == pytest.approx(2 / 3)  # {a, b} / 3 words
    assert type_token_ratio(["A b", "b, c"]) == pytest.approx(3 / 4)  # pooled, lower-cased
    assert type_token_ratio([]) == 0.0 and type_token_ratio(["", "..."]) == 0.0


def test_self_bleu_identical_and_disjoint():
    assert self_bleu(["the cat sat on the mat"] * 3) == pytest.approx(1.0)
    # no shared n-gram at any order -> sacrebleu returns 0 before smoothing
    assert self_bleu(["a b c d", "e f g h", "i j k l"]) == 0.0


def test_self_bleu_by_hand():
    # "a b c d" vs "a b c e" (and back): precisions 3/4, 2/3, 1/2 and 0/1 for 4-grams,
    # which exp smoothing turns into 1/(2*1); brevity penalty 1 (equal lengths):
    # BLEU = (3/4 * 2/3 * 1/2 * 1/2) ** (1/4) = (1/8) ** (1/4) = 2 ** -0.75
    assert self_bleu(["a b c d", "a b c e"]) == pytest.approx(2**-0.75)
    # n_max=2: (3/4 * 2/3) ** (1/2) = 0.5 ** 0.5
    assert self_bleu(["a b c d", "a b c e"], n_max=2) == pytest.approx(0.5**0.5)


def test_self_bleu_empty_texts():
    assert self_bleu([]) == 0.0
    assert self_bleu(["", "the cat"]) == 0.0  # one non-empty text
    assert self_bleu(["", "  ", "the cat sat", "the cat sat"]) == pytest.approx(1.0)


def _naive_self_bleu(texts: list[str], n_max: int = 4) -> float:
    bleu = BLEU(effective_order=True, max_ngram_order=n_max)
    return float(np.mean([bleu.sentence_score(h, texts[:i] + texts[i + 1 :]).score for i, h in enumerate(texts)])) / 100


def test_self_bleu_equals_sacrebleu_sentence_score():
    # repeated n-grams (clipping), several lengths (closest reference length, ties to the
    # shorter), punctuation (13a tokenizer), a text whose n-grams only it has
    texts = [
        "The cat sat on the mat.",
        "the the the cat",
        "The cat sat.",
        "a dog, a dog, a dog!",
        "The cat sat on the mat with the dog.",
        "zzz",
        "on the mat the cat sat on the mat",
        "A dog sat on the cat",
        "the cat",
    ]
    for n_max in (1, 2, 4):
        assert self_bleu(texts, n_max=n_max) == pytest.approx(_naive_self_bleu(texts, n_max))
    rng = random.Random(3)
    vocab = "the a cat dog sat ran on in mat hat . ,".split()
    texts = [" ".join(rng.choices(vocab, k=rng.randint(1, 25))) for _ in range(30)]
    assert self_bleu(texts) == pytest.approx(_naive_self_bleu(texts))


def test_self_bleu_subsample():
    texts = [f"w{i} w{i + 1} w{i + 2} common words" for i in range(10)]
    # the subset is random.Random(seed).sample of the non-empty texts
    subset = random.Random(7).sample(texts, 4)
    assert self_bleu(texts + [""], subsample=4, seed=7) == pytest.approx(self_bleu(subset))
    assert self_bleu(texts, subsample=10) == pytest.approx(self_bleu(texts))  # not smaller
    assert self_bleu(texts, subsample=4, seed=1) == self_bleu(texts, subsample=4, seed=1)


def test_unigram_js():
    c = Counter({"a": 3, "b": 1})
    assert unigram_js(c, Counter({"a": 6, "b": 2})) == pytest.approx(0.0, abs=1e-12)
    assert unigram_js(Counter({"a": 1}), Counter({"b": 5})) == pytest.approx(math.log(2))
    # p = (1, 0), q = (1/2, 1/2), m = (3/4, 1/4): KL(p||m) = ln(4/3), KL(q||m) = ln(4/3)/2
    # JS = (ln(4/3) + ln(4/3)/2) / 2 = 0.75 ln(4/3)
    assert unigram_js(Counter({"a": 2}), Counter({"a": 1, "b": 1})) == pytest.approx(0.75 * math.log(4 / 3))
    assert unigram_js(c, Counter({"a": 1, "c": 9})) == pytest.approx(
        unigram_js(Counter({"a": 1, "c": 9}), c)
    )  # symmetric
    assert unigram_js(Counter(), Counter()) == 0.0
    assert unigram_js(c, Counter()) == pytest.approx(math.log(2))


def test_rare_types_and_coverage():
    real = Counter({"the": 10, "cat": 5, "owl": 6, "dog": 1, "gone": 0})
    assert rare_types(real) == {"cat", "dog"}  # 1 <= count <= 5
    assert rare_types(real, max_count=6) == {"cat", "dog", "owl"}
    assert rare_types(real, max_count=0) == set()
    # words are lower-cased: "Cat" covers "cat"; "dog" is missing -> 1/2
    assert rare_coverage({"cat", "dog"}, ["The Cat sat", "on the mat"]) == 0.5
    assert rare_coverage({"cat", "dog"}, ["a dog", "a cat"]) == 1.0
    assert rare_coverage(set(), ["a cat"]) == 0.0
    assert rare_coverage({"cat"}, []) == 0.0


def test_zipf_slope():
    # frequency 1000 / r at rank r: log f = log 1000 - log r, slope exactly -1
    assert zipf_slope(Counter({f"w{r}": 1000 / r for r in range(1, 11)})) == pytest.approx(-1.0)
    assert zipf_slope(Counter({f"w{r}": 1000 / r**2 for r in range(1, 11)})) == pytest.approx(-2)
    # only the top 3 (1000, 500, 333.3) enter the fit; the flat tail is ignored
    counts = Counter({"w1": 1000, "w2": 500, "w3": 1000 / 3, "x": 1, "y": 1, "z": 1})
    assert zipf_slope(counts, top=3) == pytest.approx(-1.0)
    assert zipf_slope(Counter({"a": 5, "b": 5, "c": 5})) == pytest.approx(0.0, abs=1e-12)
    assert zipf_slope(Counter({"a": 5, "b": 1})) == 0.0  # < 3 types
    assert zipf_slope(Counter({"a": 5, "b": 1, "c": 0})) == 0.0  # zero counts dropped


def test_quantiles():
    # numpy linear interpolation on [1..5]: position q*(5-1): 0.4 -> 1.4, 2 -> 3, 3.6 -> 4.6
    assert quantiles([5, 1, 4, 2, 3]) == pytest.approx({"p10": 1.4, "p50": 3.0, "p90": 4.6})
    assert quantiles([1, 2, 3, 4, 5], qs=(0.25, 0.975)) == pytest.approx({"p25": 2.0, "p97.5": 4.9})
    assert quantiles([]) == {"p10": 0.0, "p50": 0.0, "p90": 0.0}
    assert quantiles([float("nan"), 7.0]) == {"p10": 7.0, "p50": 7.0, "p90": 7.0}


def test_log_histogram():
    assert log_bin_edges(1, 100, 2) == pytest.approx([1, 10, 100])
    # edges 1, 10, 100; clipped values 1, 1, 5 | 10, 50, 100, 100 (hi closes the last bin)
    assert log_histogram([0.5, 1, 5, 10, 50, 100, 1000], lo=1, hi=100, bins=2) == [3, 4]
    assert log_histogram([2, 20, 200], lo=1, hi=1000, bins=3) == [1, 1, 1]
    assert log_histogram([], lo=1, hi=10, bins=4) == [0, 0, 0, 0]
    assert log_histogram([float("nan"), 3], lo=1, hi=10, bins=1) == [1]
    for lo, hi, bins in ((0, 10, 2), (10, 1, 2), (1, 10, 0)):
        with pytest.raises(ValueError):
            log_histogram([1.0], lo, hi, bins)


# ---- bias --------------------------------------------------------------------------------


def test_character_names_skips_sentence_starts_and_stopwords():
    texts = [
        # Once: text start; Gretel, Hans, Gretel: mid-sentence; Hans after ". ": start;
        # The: stopword
        "Once upon a time Gretel met Hans. Hans said hello to Gretel and The wolf.",
        # "Gretel: opens a quote; Hans after said: counted; "Hans after '. "': opens a quote;
        # Gretel after said: counted; Gretel after a line break: start
        '"Gretel," said Hans. "Hans is here," said Gretel.\nGretel ran.',
    ]
    # mid-sentence counts: Gretel 3, Hans 2
    assert character_names(texts, min_count=2) == ["Gretel", "Hans"]
    assert character_names(texts, min_count=3) == ["Gretel"]
    assert character_names(texts, min_count=1, top=1) == ["Gretel"]
    assert character_names(["I saw Zed and Bo at noon."], min_count=1) == ["Bo", "Zed"]  # tie
    # after a closing quote: mid-sentence after a comma, a start after ! or ?
    assert character_names(['"Stop," Gretel cried.'], min_count=1) == ["Gretel"]
    assert character_names(['"Go!" Gretel cried. "Why?" Hans asked.'], min_count=1) == []
    assert character_names(["and Then She saw It", "I met NASA and McDonald"], min_count=1) == []


def test_name_counts():
    texts = ["Gretel met Gretelina and GRETEL, gretel.", "Gretel!"]
    # whole words, case-sensitive: Gretelina, GRETEL and gretel do not count
    assert name_counts(texts, ["Gretel", "Hans"]) == Counter({"Gretel": 2})
    assert name_counts(texts, []) == Counter()


def test_pronoun_counts():
    text = "He gave her his hat; She thanked HIM. They and their friends, themselves, the hero."
    # he: He, his, HIM = 3; she: her, She = 2; they: They, their, themselves = 3
    assert pronoun_counts([text]) == Counter({"he": 3, "she": 2, "they": 3})
    assert pronoun_counts(["herself hers", "himself them theirs"]) == Counter({"she": 2, "he": 1, "they": 2})
    assert pronoun_counts(["the hero"]) == Counter()


def test_total_variation():
    assert total_variation(Counter({"a": 1, "b": 1}), Counter({"a": 5, "b": 5})) == 0.0
    assert total_variation(Counter({"a": 1}), Counter({"b": 3})) == 1.0
    # (3/4, 1/4) vs (1/2, 1/2): 0.5 * (1/4 + 1/4) = 0.25
    assert total_variation(Counter({"a": 3, "b": 1}), Counter({"a": 1, "b": 1})) == 0.25
    assert total_variation(Counter(), Counter()) == 0.0
    assert total_variation(Counter({"a": 2}), Counter()) == 1.0
    assert total_variation(Counter(), Counter({"a": 2})) == 1.0


def test_bias_metrics():
    names = ["Gretel", "Hans"]
    real = ["Gretel and Hans met Gretel. he saw her, she saw him."]
    samples = ["Hans met Hans and Gretel.", "She said she saw them."]
    # real names: Gretel 2, Hans 1 (top name Gretel); samples: Hans 2, Gretel 1
    #   top_name_share = 1/3; name_tv = 0.5 * (|2/3 - 1/3| + |1/3 - 2/3|) = 1/3
    # pronouns real: he 2, she 2 -> (1/2, 1/2, 0); samples: she 2, they 1 -> (0, 2/3, 1/3)
    #   pronoun_tv = 0.5 * (1/2 + 1/6 + 1/3) = 1/2; she_share = 2/3
    assert bias_metrics(real, samples, names) == pytest.approx(
        {"top_name_share": 1 / 3, "name_tv": 1 / 3, "pronoun_tv": 0.5, "she_share": 2 / 3}
    )
    assert bias_metrics(real, [""], names) == {
        "top_name_share": 0.0,
        "name_tv": 1.0,
        "pronoun_tv": 1.0,
        "she_share": 0.0,
    }
    assert bias_metrics(real, samples, [])["name_tv"] == 0.0
    assert bias_metrics(real, real, names) == pytest.approx(
        {"top_name_share": 2 / 3, "name_tv": 0.0, "pronoun_tv": 0.0, "she_share": 0.5}
    )


def test_sample_metrics_has_every_summary_metric_in_range():
    from synthloop.metrics.samples import sample_metrics
    from synthloop.stages.report import COLUMNS

    real = ["Hans went to the wood. Then Hans met Grethel, and she said hello to him."] * 6
    samples = ["Hans went home and he slept.", "the the the the", ""]
    m = sample_metrics(samples, real, real)
    for key in (
        "distinct_1",
        "distinct_2",
        "distinct_3",
        "ttr",
        "self_bleu",
        "unigram_js",
        "rare_coverage",
        "top_name_share",
        "name_tv",
        "pronoun_tv",
        "she_share",
        "empty_share",
    ):
        assert 0 <= m[key] <= 1, key
    assert m["empty_share"] == 1 / 3
    assert set(m) <= set(COLUMNS)


def test_sample_metrics_do_not_depend_on_the_hash_seed():
    """DVC runs each stage in its own process: set order must not reach a float sum."""
    import os
    import subprocess
    import sys

    from tests.conftest import FAIRY

    code = (
        "import json, sys; from synthloop.metrics.samples import sample_metrics; "
        "docs = open(sys.argv[1], encoding='utf-8').read().split('\\n\\n'); "
        "print(json.dumps(sample_metrics(docs[300:400], docs[:100], docs[:300]), sort_keys=True))"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code, str(FAIRY / "train.txt")],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2", "3", "4")
    }
    assert len(outs) == 1


def test_cut_words_keeps_order_and_cuts_the_last_text():
    from synthloop.metrics.samples import cut_words

    assert cut_words(["a b c", "d, e f", "g"], 5) == ["a b c", "d, e"]
    assert cut_words(["a b", ""], 10) == ["a b", ""]
    assert cut_words(["a b c"], 0) == []


def test_sample_metrics_see_exactly_the_word_budget_and_so_does_the_reference():
    """Round 1's confound: the same text in shorter pieces scored as more diverse. On a word budget
    the pooled metrics see the same words, and the real reference is cut to that budget too."""
    from synthloop.metrics.samples import sample_metrics

    real = [
        f"the king {w} went to the {v} wood and met a {u}" for w, v, u in zip("abcdefgh", "ijklmnop", "qrstuvwx")
    ] * 5
    long = [" ".join(real[i : i + 4]) for i in range(0, 40, 4)]
    short = [" ".join(t.split()[:5]) for t in real]  # the first words only
    on_budget = sample_metrics(long, real, real, budget=100), sample_metrics(short, real, real, budget=100)
    assert on_budget[0]["metric_words"] == 100 and on_budget[1]["metric_words"] == 100
    assert (
        on_budget[0]["distinct_2_real"] == on_budget[1]["distinct_2_real"]
    )  # the reference depends on the budget only
    unbudgeted = sample_metrics(long, real, real), sample_metrics(short, real, real)
    assert unbudgeted[0]["metric_words"] == sum(len(t.split()) for t in long)
    assert unbudgeted[1]["distinct_2_real"] != unbudgeted[0]["distinct_2_real"]

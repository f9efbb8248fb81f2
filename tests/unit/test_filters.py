"""Heuristic drop reasons (graders/filters.py) and the self grader's fitted keep rule (graders/likelihood.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from synthloop.config import GradeParams
from synthloop.graders import rules
from synthloop.graders.filters import filter_reason
from synthloop.graders.likelihood import SelfGrader


def self_keep(ppl, cfg) -> list[bool]:
    """The keep mask of the self rule fitted on `ppl`, applied to `ppl`."""
    rule = SelfGrader(SimpleNamespace(cfg=cfg)).fit(ppl)
    assert rules.keep_prob(rule, ppl) == [float(r is None) for r in rules.decide(rule, ppl)]  # one rule, both ways
    return [r is None for r in rules.decide(rule, ppl)]


@pytest.fixture
def grade(tiny):
    def _grade(**overrides) -> GradeParams:
        return GradeParams(**{**tiny.grade.model_dump(), **overrides})

    return _grade


@pytest.mark.parametrize(
    "text, reason",
    [
        ("one", "too_short"),
        ("", "too_short"),
        ("a b c d e f g", "too_long"),
        ("a b c a b c", "repetitive"),  # 3-grams abc bca cab abc: 1/4 repeat > 0.2
        ("a b c d e f", None),
        ("Hello, world!", None),  # punctuation is not a word
    ],
)
def test_filter_reason(grade, text, reason):
    assert filter_reason(text, grade(min_words=2, max_words=6, max_repetition=0.2)) == reason


def test_filter_reason_bounds_are_inclusive(grade):
    cfg = grade(min_words=2, max_words=3, max_repetition=0.25)
    assert filter_reason("a b", cfg) is None
    assert filter_reason("a b c", cfg) is None
    cfg = grade(min_words=1, max_words=10, max_repetition=0.25)
    assert filter_reason("a b c a b c", cfg) is None  # repetition exactly 1/4


PPL = [10.0, 50.0, 20.0, 40.0, 30.0]
T, F = True, False


@pytest.mark.parametrize(
    "overrides, mask",
    [
        ({"self_rule": "none"}, [True] * 5),
        ({"self_rule": "threshold", "self_max_ppl": 25.0}, [T, F, T, F, F]),
        ({"self_rule": "threshold", "self_max_ppl": 20.0}, [T, F, T, F, F]),  # inclusive
        ({"self_rule": "lowest", "self_fraction": 0.4}, [T, F, T, F, F]),
        ({"self_rule": "highest", "self_fraction": 0.4}, [F, T, F, T, F]),
        ({"self_rule": "lowest", "self_fraction": 0.01}, [T, F, F, F, F]),  # at least one
        ({"self_rule": "band", "self_band_low": 0.25, "self_band_high": 0.75}, [F, F, T, T, T]),
        ({"self_rule": "band", "self_band_low": 0.0, "self_band_high": 1.0}, [True] * 5),
    ],
)
def test_self_keep_masks(grade, overrides, mask):
    assert self_keep(PPL, grade(**overrides)) == mask


@pytest.mark.parametrize("rule", ["lowest", "highest"])
def test_self_keep_keeps_every_tie_at_the_cut(grade, rule):
    cfg = grade(self_rule=rule, self_fraction=0.5)
    assert self_keep([5.0, 5.0, 5.0, 5.0], cfg) == [T, T, T, T]
    assert self_keep([1.0, 5.0, 5.0, 9.0], cfg) == ([T, T, T, F] if rule == "lowest" else [F, T, T, T])


def test_unscored_samples_are_kept_and_the_rule_fits_on_the_scored(grade):
    assert self_keep([None, 10.0, 50.0, None], grade(self_rule="lowest", self_fraction=0.5)) == [T, T, F, T]


@pytest.mark.parametrize("rule", ["none", "threshold", "lowest", "highest", "band"])
def test_self_keep_empty(grade, rule):
    assert self_keep([], grade(self_rule=rule)) == []

"""synthloop.stages.mix: exact training-set composition per strategy, provenance, determinism."""

from __future__ import annotations

import copy
from random import Random

import pytest

from synthloop.config import STRATEGIES, MixParams
from synthloop.records import real_row, sample_row, share
from synthloop.stages.mix import draw, mix_rows

REAL_ALL = [real_row(i, f"real document {i}") for i in range(100)]
REAL_BASE = REAL_ALL[:20]  # train_size real rows
KEPT = [sample_row(2, i, f"gen two sample {i}", "") for i in range(30)]
POOL = [sample_row(1, i, f"gen one sample {i}", "") for i in range(25)] + KEPT


def mix(strategy, real_fraction=0.1, train_size=20, kept=KEPT, pool=POOL, seed=0, unit="documents", size=None):
    cfg = MixParams(
        strategy=strategy,
        real_fraction=real_fraction,
        train_size=train_size,
        unit=unit,
        train_size0=None,
        select="none",
        select_power=1.0,
    )
    return mix_rows(cfg, REAL_BASE, REAL_ALL, kept, pool, Random(seed), size)


def n_real(rows):
    return sum(r["source"] == "real" for r in rows)


def test_replace_takes_train_size_kept_rows():
    out = mix("replace")
    assert len(out) == 20 and n_real(out) == 0
    assert {r["id"] for r in out} <= {r["id"] for r in KEPT}


def test_replace_takes_all_when_fewer_kept():
    out = mix("replace", kept=KEPT[:5])
    assert sorted(r["id"] for r in out) == sorted(r["id"] for r in KEPT[:5])


def test_accumulate_is_real_base_plus_whole_pool():
    out = mix("accumulate")
    assert len(out) == len(REAL_BASE) + len(POOL) == 75
    assert sorted(r["id"] for r in out) == sorted(r["id"] for r in REAL_BASE + POOL)


def test_accumulate_subsample_keeps_train_size():
    out = mix("accumulate_subsample")
    assert len(out) == 20 and len({r["id"] for r in out}) == 20
    assert {r["id"] for r in out} <= {r["id"] for r in REAL_BASE + POOL}


@pytest.mark.parametrize("r, expected_real", [(0.0, 0), (0.1, 2), (0.5, 10), (1.0, 20)])
def test_fixed_fraction_exact_counts(r, expected_real):
    out = mix("fixed_fraction", real_fraction=r)
    assert len(out) == 20 and n_real(out) == expected_real
    assert share(out, "synthetic") == pytest.approx((20 - expected_real) / 20)
    assert {r["id"] for r in out if r["source"] == "real"} <= {r["id"] for r in REAL_ALL}
    assert {r["id"] for r in out if r["source"] == "synthetic"} <= {r["id"] for r in KEPT}


def test_dilution_is_fixed_fractions_real_rows_alone():
    for r in (0.1, 0.5):
        fixed, alone = mix("fixed_fraction", real_fraction=r, seed=5), mix("dilution", real_fraction=r, seed=5)
        assert sorted(x["id"] for x in alone) == sorted(x["id"] for x in fixed if x["source"] == "real")
        assert n_real(alone) == len(alone) == round(r * 20)


def words_of(row):
    return len(row["text"].split())


# real rows: 3 words each ("real document i"), kept samples 4 ("gen two sample i")
@pytest.mark.parametrize(
    "strategy, r, real_words, synthetic_words",
    [
        ("replace", 0.1, 0, 40),
        ("fixed_fraction", 0.1, 6, 36),
        ("fixed_fraction", 0.5, 21, 20),
        ("dilution", 0.5, 21, 0),
    ],
)
def test_tokens_unit_counts_size_not_documents(strategy, r, real_words, synthetic_words):
    out = mix(strategy, real_fraction=r, train_size=40, unit="tokens", size=words_of)
    got = {src: sum(words_of(x) for x in out if x["source"] == src) for src in ("real", "synthetic")}
    assert got == {"real": real_words, "synthetic": synthetic_words}  # whole documents until the size is reached


def test_tokens_unit_subsample_stops_at_size():
    out = mix("accumulate_subsample", train_size=40, unit="tokens", size=words_of)
    total = sum(map(words_of, out))
    assert 40 <= total < 44  # the last document may pass the size by less than its own length


def test_fixed_fraction_resamples_real_beyond_the_base():
    runs = [mix("fixed_fraction", real_fraction=1.0, seed=seed) for seed in range(10)]
    ids = {r["id"] for out in runs for r in out}
    assert ids - {r["id"] for r in REAL_BASE}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_provenance_preserved_and_deterministic(strategy):
    originals = {r["id"]: copy.deepcopy(r) for r in REAL_ALL + POOL}
    out = mix(strategy, real_fraction=0.5, seed=3)
    assert all(r == originals[r["id"]] for r in out)
    assert len({r["id"] for r in out}) == len(out)  # no row drawn twice
    assert [r["id"] for r in mix(strategy, real_fraction=0.5, seed=3)] == [r["id"] for r in out]
    assert [r["id"] for r in mix(strategy, real_fraction=0.5, seed=4)] != [r["id"] for r in out]


def test_draw_returns_all_rows_shuffled_when_fewer():
    rows = REAL_ALL[:5]
    out = draw(rows, 10, Random(1))
    assert sorted(r["id"] for r in out) == sorted(r["id"] for r in rows)
    assert draw(rows, 0, Random(1)) == []
    assert draw([], 3, Random(1)) == []
    assert rows == REAL_ALL[:5]  # input list not shuffled in place


def test_row_constructors_carry_provenance():
    assert real_row(3, "t") == {
        "id": "real:3",
        "text": "t",
        "source": "real",
        "generation": 0,
        "parent": None,
        "prompt": "",
        "scores": {},
    }
    assert sample_row(4, 7, "t", "Once") == {
        "id": "g4:7",
        "text": "t",
        "source": "synthetic",
        "generation": 4,
        "parent": 3,
        "writer": "gen3",
        "prompt": "Once",
        "truncated": False,
        "scores": {},
    }
    assert sample_row(4, 7, "t", "Once", truncated=True)["truncated"] is True
    teacher = sample_row(4, 7, "t", "Once", "teacher:smollm2@http://127.0.0.1:8080", None)
    assert (teacher["parent"], teacher["writer"]) == (None, "teacher:smollm2@http://127.0.0.1:8080")
    assert share([], "real") == 0.0


def test_verifier_selection_draws_real_looking_rows_first():
    """mix.select = verifier: the same size as a uniform draw, but weighted: rows with weight 0
    only when nothing else is left, and heavier rows more often."""
    from synthloop.stages.mix import weighted_draw

    rows = REAL_BASE + POOL
    weights = [1.0 if r["source"] == "real" else 0.05 for r in rows]
    cfg = MixParams(
        strategy="accumulate_subsample",
        real_fraction=0.1,
        train_size=20,
        unit="documents",
        train_size0=None,
        select="verifier",
        select_power=1.0,
    )
    picks = [mix_rows(cfg, REAL_BASE, REAL_ALL, KEPT, POOL, Random(s), None, weights) for s in range(20)]
    assert all(len(out) == 20 and len({r["id"] for r in out}) == 20 for out in picks)
    real_share = sum(n_real(out) for out in picks) / (20 * 20)
    assert real_share > 0.6  # uniform draws give 20 / 75 real
    zero = weighted_draw(rows, [0.0 if r["source"] == "real" else 1.0 for r in rows], 55, Random(0))
    assert n_real(zero) == 0 and len(zero) == 55  # weight 0 only once everything else is taken

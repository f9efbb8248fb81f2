"""synthloop.graders: keep rules, garbage filter, dedup, decontamination, verifier, audit (hand-computed)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from datasketch import MinHash

from synthloop.config import GradeParams
from synthloop.graders import audit, rules
from synthloop.graders.decontam import DecontamGrader, contamination, ngram_set
from synthloop.graders.dedup import Sketcher, dedup, exact_key, normalise, shingle_hashes
from synthloop.graders.filters import filter_reason, garbage
from synthloop.graders.judge import JudgeGrader
from synthloop.graders.likelihood import ReferenceGrader, SelfGrader
from synthloop.graders.verifier import Verifier, VerifierGrader, fit, load, save
from synthloop.io import DataError
from tests.conftest import FAIRY

T, F = True, False


@pytest.fixture
def grade(tiny):
    def _grade(**overrides) -> GradeParams:
        return GradeParams(**{**tiny.grade.model_dump(), **overrides})

    return _grade


@pytest.fixture(scope="module")
def paragraphs() -> list[str]:
    """Real fairy-tale documents of at least 100 words, cut to their first 100."""
    docs = FAIRY.joinpath("train.txt").read_text(encoding="utf-8").split("\n\n")
    return [" ".join(d.split()[:100]) for d in docs if len(d.split()) >= 100][:40]


# --- filters -----------------------------------------------------------------


@pytest.mark.parametrize(
    "text, share",
    [
        ("", 0.0),
        ("Hello, world! It's 9 o'clock.", 0.0),
        ("“Quoted” — and… done", 0.0),  # typographic punctuation is common
        ("Café déjà vu", 0.0),  # letters are letters, accented or not
        ("ab\ufffd\ufffd", 0.5),  # replacement characters from broken bytes
        ("a\x18b\x02", 0.5),  # control characters
        ("ok ☃☃", 0.4),  # symbols: 2 of 5 characters
    ],
)
def test_garbage_share(text, share):
    assert garbage(text) == pytest.approx(share)


def test_garbage_filter_drops_above_the_threshold(grade):
    cfg = grade(min_words=1, max_words=100, max_repetition=1.0, max_garbage=0.25)
    assert filter_reason("abc\ufffd", cfg) is None  # exactly 0.25: kept
    assert filter_reason("ab\ufffd\ufffd", cfg) == "garbage"
    assert filter_reason("ab\ufffd\ufffd", grade(min_words=1, max_garbage=1.0)) is None  # 1 = off


# --- keep rules ----------------------------------------------------------------

PPL = [10.0, 50.0, 20.0, 40.0, 30.0]


def env(cfg, **more):
    return SimpleNamespace(cfg=cfg, **more)


@pytest.mark.parametrize(
    "overrides, low, high",
    [
        ({"self_rule": "none"}, -np.inf, np.inf),
        ({"self_rule": "threshold", "self_max_ppl": 25.0}, -np.inf, 25.0),
        ({"self_rule": "lowest", "self_fraction": 0.4}, -np.inf, 20.0),
        ({"self_rule": "highest", "self_fraction": 0.4}, 40.0, np.inf),
        ({"self_rule": "band", "self_band_low": 0.25, "self_band_high": 0.75}, 20.0, 40.0),
    ],
)
def test_self_rule_is_the_bar_the_samples_cleared(grade, overrides, low, high):
    rule = SelfGrader(env(grade(**overrides))).fit(PPL)
    assert (rule.low, rule.high) == (low, high)
    kept = [r is None for r in rules.decide(rule, PPL)]
    assert kept == [low <= v <= high for v in PPL]
    assert rules.keep_prob(rule, [15.0, 35.0, None]) == [float(low <= 15 <= high), float(low <= 35 <= high), 1.0]


def test_preference_orients_scores():
    x = [10.0, 20.0, None]
    assert rules.preference(rules.Rule(prefer="lower"), x)[:2].tolist() == [-10.0, -20.0]
    assert rules.preference(rules.Rule(prefer="higher"), x)[:2].tolist() == [10.0, 20.0]
    centred = rules.preference(rules.Rule(prefer="centre", centre=float(np.log(20.0))), x)
    assert centred[1] == 0.0 and centred[0] < 0 and np.isnan(centred[2])


def test_rank_cut_keeps_ties():
    assert rules.rank_cut([0.1, 0.9, 0.5, 0.7], 0.5, highest=True) == 0.7
    assert rules.rank_cut([0.1, 0.9, 0.5, 0.7], 0.5, highest=False) == 0.5
    assert rules.rank_cut([0.5, 0.5, 0.5], 0.34, highest=True) == 0.5  # every tie at the cut is kept
    assert rules.rank_cut([0.2, None], 0.01, highest=True) == 0.2  # at least one; unscored left out
    assert rules.rank_cut([], 0.5, highest=True) == -np.inf


def test_reference_band_from_real_text(grade):
    real = [10.0, 20.0, 30.0, 40.0, 50.0]
    grader = ReferenceGrader(
        env(
            grade(reference_rule="band", reference_low=0.25, reference_high=0.75),
            audit_texts=["r"] * 5,
            ppl=lambda g, texts, cache=None: real,
        )
    )
    rule = grader.fit()
    assert (rule.low, rule.high) == (20.0, 40.0)
    assert rules.decide(rule, [5.0, 20.0, 35.0, 40.0, 41.0, None]) == [
        "reference_low",
        None,
        None,
        None,
        "reference_high",
        None,
    ]
    assert rules.quantiles(real, 0.0, 1.0) == (10.0, 50.0)
    with pytest.raises(ValueError):
        rules.quantiles([], 0.1, 0.9)


def test_verifier_top_keeps_the_most_real_like(grade):
    p = [0.2, 0.9, 0.6, 0.4]
    rule = VerifierGrader(env(grade(verifier_rule="top", verifier_fraction=0.5))).fit(p)
    assert rules.decide(rule, p) == ["verifier_top", None, None, "verifier_top"] and rule.low == 0.6
    assert rules.keep_prob(rule, [0.59, 0.6, 0.95]) == [0.0, 1.0, 1.0]
    none = VerifierGrader(env(grade(verifier_rule="none"))).fit(p)
    assert rules.decide(none, p) == [None] * 4 and rules.keep_prob(none, [0.1]) == [1.0]


def test_odds_and_resample_scale():
    assert rules.odds([0.5, 0.75, 0.2]).tolist() == pytest.approx([1.0, 3.0, 0.25])
    assert np.isfinite(rules.odds([0.0, 1.0])).all()
    w = np.array([1.0, 3.0, 0.25, 0.5])
    c = rules.resample_scale(w, 0.5)  # min(1, w/c) sums to 2: c = 1.75 -> 1/1.75 + 1 + 0.25/1.75 + 0.5/1.75
    assert c == pytest.approx(1.75)
    p = (w / (1 + w)).tolist()
    assert sum(rules.keep_prob(rules.Rule(scale=c), p)) == pytest.approx(2.0)
    assert rules.keep_prob(rules.Rule(scale=rules.resample_scale(w, 1.0)), p) == pytest.approx([1.0] * 4)


def test_verifier_resample_is_seeded_and_keeps_the_share_in_expectation():
    rng = np.random.default_rng(1)
    p = rng.uniform(0.05, 0.95, 4000).tolist()
    rule = rules.Rule(scale=rules.resample_scale(rules.odds(p), 0.3), reason="verifier_resample", seed=7)
    keep = [r is None for r in rules.decide(rule, p)]
    assert keep == [r is None for r in rules.decide(rule, p)]
    assert keep != [r is None for r in rules.decide(rules.Rule(scale=rule.scale, reason="x", seed=8), p)]
    assert np.mean(keep) == pytest.approx(0.3, abs=0.03)
    assert np.mean(rules.keep_prob(rule, p)) == pytest.approx(0.3, abs=1e-6)  # the same rule, as a probability
    kept_p = np.asarray(p)[np.asarray(keep)]
    assert kept_p.mean() > np.mean(p)  # the odds favour real-like samples
    real = rules.keep_prob(rule, [0.01, 0.5, 0.99])
    assert real[0] < real[1] <= real[2] == 1.0


@pytest.mark.parametrize(
    "rule, unparsed, reasons, cut",
    [
        ("threshold", "drop", [None, None, "judge_low", "judge_unparsed", None], 6.0),  # >= 6 kept
        ("threshold", "keep", [None, None, "judge_low", None, None], 6.0),
        ("top", "drop", [None, "judge_low", "judge_low", "judge_unparsed", None], 7.0),  # best half of 4 parsed
        ("top", "keep", [None, "judge_low", "judge_low", None, None], 7.0),
    ],
)
def test_judge_rule(grade, rule, unparsed, reasons, cut):
    scores = [7.0, 6.0, 5.9, None, 9.0]
    fitted = JudgeGrader(
        env(grade(judge_rule=rule, judge_min_score=6.0, judge_fraction=0.5, judge_unparsed=unparsed))
    ).fit(scores)
    assert (rules.decide(fitted, scores), fitted.low) == (reasons, cut)


def test_judge_top_ties_and_nothing_parsed(grade):
    judge = JudgeGrader(env(grade(judge_rule="top", judge_fraction=0.5, judge_unparsed="drop")))
    assert rules.decide(judge.fit([5.0, 5.0, 5.0, 5.0]), [5.0, 5.0, 5.0, 5.0]) == [None] * 4  # ties at the cut kept
    assert rules.decide(judge.fit([None, None]), [None, None]) == ["judge_unparsed"] * 2


# --- dedup ---------------------------------------------------------------------


def test_normalisation_for_exact_duplicates():
    assert normalise("  Hello,   World!\n\tIt's ME. ") == "hello world it s me"  # words as everywhere
    assert exact_key(normalise("Hello, World!")) == exact_key(normalise("hello world"))
    reasons, sims = dedup(["The Cat sat.", "the cat   SAT", "the cat sat down"], [], 0.8, 64, 3)
    assert reasons[:2] == [None, "dedup_exact"] and sims[1] == 1.0


def test_one_changed_word_is_a_near_duplicate_and_unrelated_texts_are_not(paragraphs):
    a, b = paragraphs[0], paragraphs[1]
    tokens = a.split()
    tokens[50] = "dragonfly"
    edited = " ".join(tokens)  # Jaccard of 3-word shingles: 95/101 = 0.94
    reasons, sims = dedup([a, edited, b], [], threshold=0.8, num_perm=128, shingle=3)
    assert reasons == [None, "dedup_near", None]
    assert sims[1] == pytest.approx(95 / 101, abs=0.08)
    assert sims[2] < 0.3


def test_dedup_threshold_decides(paragraphs):
    a = paragraphs[2].split()
    half = " ".join(a[:50] + paragraphs[3].split()[:50])  # shares 48 of 98 shingles with a: Jaccard ~0.33
    assert dedup([" ".join(a), half], [], 0.8, 128, 3)[0] == [None, None]
    assert dedup([" ".join(a), half], [], 0.2, 128, 3)[0] == [None, "dedup_near"]


def test_unrelated_real_texts_are_all_kept(paragraphs):
    reasons, _ = dedup(paragraphs, [], 0.8, 128, 3)
    assert reasons == [None] * len(paragraphs)


def test_dedup_against_earlier_generations_and_first_one_wins(paragraphs):
    a, b, c = paragraphs[4], paragraphs[5], paragraphs[6]
    reasons, _ = dedup([b + " The end.", c, c.upper()], earlier=[b], threshold=0.8, num_perm=128, shingle=3)
    assert reasons == ["dedup_near", None, "dedup_exact"]
    reasons, _ = dedup([a, a], earlier=[], threshold=0.8, num_perm=128, shingle=3)
    assert reasons == [None, "dedup_exact"]


def test_dedup_short_and_empty_texts():
    reasons, sims = dedup(["", "", "hi", "hi there", "Hi!"], [], 0.8, 64, 3)
    assert reasons == [None, "dedup_exact", None, None, "dedup_exact"]
    assert sims[0] == 0.0


def test_bulk_sketches_equal_datasketch_minhash():
    """Our numpy sketches are datasketch's affine32 MinHash of the same shingle hashes."""
    texts = [normalise(t) for t in ("The cat sat on the mat, and the dog barked.", "one two", "a", "")]
    sketcher = Sketcher(num_perm=64, shingle=3)
    sigs, has = sketcher.signatures(texts)
    assert has.tolist() == [True, True, True, False]
    for text, sig in zip(texts[:3], sigs):
        m = MinHash(num_perm=64, seed=1, hashfunc=int, scheme="affine32")
        m.update_batch(shingle_hashes(text.split(), 3).tolist())
        assert (m.hashvalues == sig).all()
    assert len(shingle_hashes("a b c d e".split(), 3)) == 3 and len(shingle_hashes(["a"], 3)) == 1


# --- decontamination -----------------------------------------------------------


def test_decontamination_on_planted_test_ngrams(grade):
    test = ["once upon a time there lived a king who had three daughters and a golden ball"]
    grams = ngram_set(test, 4)
    clean = "the miller walked to the river and sang a song to the fish"
    leaked = "and then once upon a time there lived a king said the fish"  # 5 of its 10 4-grams are in test
    assert contamination(clean, grams, 4) == 0.0
    assert contamination(leaked, grams, 4) == 0.5
    assert contamination("too short", grams, 4) == 0.0

    def decontaminate(texts, threshold):
        out = DecontamGrader(env(grade(decontam_ngram=4, decontam_threshold=threshold), test_texts=test)).grade(texts)
        return out.reasons, out.scores["contamination"]

    reasons, shares = decontaminate([clean, leaked], threshold=0.4)
    assert reasons == [None, "contaminated"] and shares == [0.0, 0.5]
    assert decontaminate([leaked], threshold=0.5)[0] == [None]  # above, not at, the threshold


# --- verifier ------------------------------------------------------------------

REAL = [
    "the king and the queen lived in a castle by the sea",
    "a poor miller had a beautiful daughter who could spin",
    "the wolf ran into the forest and the girl went home",
    "once there was a fox who wanted the grapes on the vine",
    "the old woman gave the boy a loaf of bread and a coin",
]
SYNTH = [
    "the the king king castle castle of of",
    "and and and the the the was was",
    "king the of the the and of was the",
    "castle castle the the the king and and",
    "the was was of of the king the the",
]


def test_verifier_round_trips_through_json(tmp_path):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    model = fit(REAL, SYNTH, seed=0)
    probe = ["the queen went into the forest", "the the the of of", "", "unseen words only zzz"]
    p = model.score(probe)
    assert p[0] > 0.5 > p[1] and model.info["n_real"] == 5
    # the same numbers as scikit-learn's own fitted objects
    vec = TfidfVectorizer(ngram_range=(1, 2), token_pattern=r"(?u)\b\w+\b", sublinear_tf=True, min_df=1)
    x = vec.fit_transform(REAL + SYNTH)
    clf = LogisticRegression(C=1.0, max_iter=2000, random_state=0).fit(x, [1] * 5 + [0] * 5)
    assert p == pytest.approx(clf.predict_proba(vec.transform(probe))[:, 1], abs=1e-9)
    # stored as plain JSON (no pickle) and rebuilt bit for bit
    save(model, tmp_path / "v.json", key="k1")
    raw = json.loads((tmp_path / "v.json").read_text())
    assert raw["format"] == "synthloop-verifier/1" and raw["key"] == "k1"
    again = load(tmp_path / "v.json", "k1")
    assert again.score(probe).tolist() == p.tolist()
    assert load(tmp_path / "v.json", "other inputs") is None
    assert load(tmp_path / "missing.json", "k1") is None


def test_verifier_bad_inputs_are_one_line_data_errors(tmp_path):
    with pytest.raises(DataError, match="verifier_train_size"):
        fit(REAL[:1], SYNTH, seed=0)
    path = tmp_path / "v.json"
    path.write_text("{not json")
    with pytest.raises(DataError, match="delete it"):
        load(path, "k")
    path.write_text(
        json.dumps(
            {
                "key": "k",
                "format": "synthloop-verifier/1",
                "vocabulary": {"a": 0},
                "idf": [1.0, 2.0],
                "coef": [0.5],
                "intercept": 0.0,
                "analyzer": {},
            }
        )
    )
    with pytest.raises(DataError, match="do not line up") as info:
        load(path, "k")
    assert "\n" not in str(info.value)
    assert isinstance(Verifier.from_json(fit(REAL, SYNTH, 0).to_json()), Verifier)


# --- audit ---------------------------------------------------------------------


def test_audit_auc_orientation_and_ties():
    assert audit.auc([3.0, 4.0], [1.0, 2.0]) == 1.0  # every real document preferred
    assert audit.auc([1.0, 2.0], [3.0, 4.0]) == 0.0  # the grader prefers synthetic text
    assert audit.auc([1.0, 3.0], [2.0, 2.0]) == 0.5
    assert audit.auc([1.0, 2.0], [2.0, 0.0]) == 0.625  # pairs: 1>0, 2>0, 2=2 (half): 2.5 of 4
    assert audit.auc([np.nan, 2.0], [1.0]) == 1.0  # unscored documents are left out
    assert audit.auc([], [1.0]) is None


def test_audit_spearman_and_correlations():
    assert audit.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert audit.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert audit.spearman([1, 2], [1, 2]) is None
    assert audit.spearman([1, 1, 1], [1, 2, 3]) is None
    prefs = {
        "self": {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0},
        "verifier": {"a": 0.1, "b": 0.2, "c": 0.4, "d": 0.3},
        "judge": {"c": 1.0, "d": 2.0},
    }  # too few shared samples: left out
    out = audit.correlations(prefs)
    assert out == {"audit_corr_self_verifier": pytest.approx(0.8)}


def test_audit_grader_stats_keys_and_values():
    real, synth = np.array([10.0, 20.0, 30.0]), np.array([40.0, 50.0, np.nan])
    out = audit.grader_stats("self", real, synth, -real, -synth, [1.0, 1.0, 0.0], [True, False, True])
    assert out["audit_self_auc"] == 1.0  # lower perplexity preferred: real wins
    assert out["audit_self_real_keep"] == pytest.approx(2 / 3)
    assert out["audit_self_synth_keep"] == pytest.approx(2 / 3)
    assert out["audit_self_real_mean"] == 20.0 and out["audit_self_synth_p50"] == 45.0
    assert out["audit_self_n_synth"] == 2.0
    assert "audit_self_auc" not in audit.grader_stats("self", [], synth, [], -synth, [], [True])


def test_random_grader_keeps_a_seeded_share_blind():
    """grade.steps: [random]: the control of a keep-a-fraction grader keeps exactly its share, the
    same draw for the same loop seed and generation, whatever the texts say."""
    from types import SimpleNamespace

    from synthloop.graders.random_half import RandomGrader
    from synthloop.stages.context import StageContext

    def grade(texts, seed=0, gen=1, fraction=0.5):
        params = SimpleNamespace(loop=SimpleNamespace(seed=seed), grade=SimpleNamespace(random_fraction=fraction))
        ctx = StageContext(params, None, gen, lambda *a: None)
        return RandomGrader(SimpleNamespace(ctx=ctx, cfg=params.grade)).grade(texts).reasons

    texts = [f"text {i}" for i in range(40)]
    kept = [r is None for r in grade(texts)]
    assert sum(kept) == 20 and set(grade(texts)) == {None, "random"}
    assert grade(texts) == grade(["other"] * 40)  # blind to the texts
    assert grade(texts) != grade(texts, gen=2) and grade(texts) != grade(texts, seed=1)
    assert sum(r is None for r in grade(texts, fraction=0.25)) == 10


def test_model_feature_verifier_separates_by_loss_and_round_trips(tmp_path):
    """grade.verifier_features = model: logistic regression on the gen-0 model's per-token loss
    statistics; the stored JSON scores exactly like the fitted model, and a foreign file is one line."""
    from synthloop.graders.verifier import MODEL_FEATURES, ModelVerifier, fit_features, loss_features

    rng = np.random.default_rng(0)
    real = loss_features([rng.normal(3.0, 1.0, rng.integers(20, 60)).tolist() for _ in range(40)])
    synth = loss_features([rng.normal(4.0, 0.5, rng.integers(20, 60)).tolist() for _ in range(40)])
    assert real.shape == (40, len(MODEL_FEATURES)) and loss_features([[]]).tolist() == [[0.0] * len(MODEL_FEATURES)]
    model = fit_features(real, synth, seed=0)
    assert model.info["train_accuracy"] > 0.9
    assert model.score_features(real).mean() > 0.8 > 0.2 > model.score_features(synth).mean()
    save(model, tmp_path / "m.json", key="k")
    back = load(tmp_path / "m.json", key="k")
    assert isinstance(back, ModelVerifier)
    assert np.array_equal(back.score_features(real), model.score_features(real))
    assert load(tmp_path / "m.json", key="other") is None
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "synthloop-verifier-model/1", "features": ["x"], "key": "k"}')
    with pytest.raises(DataError, match="model-feature verifier"):
        load(bad, key="k")

"""Round 2's knobs through `synthloop run`, where users meet them: truncated samples trained
without an end, token-matched mixing from a verifier-weighted mixed pool, epochs as the budget,
fine-tuning generation 0, the blind random grader, the whole test split on a word budget."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from synthloop import io
from synthloop.config import load_params
from synthloop.layout import Layout
from synthloop.models import lm
from tests.conftest import REPO, small_corpus, tiny_params, write_params

ROUND2 = {
    "loop": {"chain": {"1": 0, "2": 1}},
    "generate": {"max_new_tokens": 24},  # most tiny samples hit the cap
    "grade": {
        "steps": ["filters", "verifier", "random"],
        "verifier_features": "model",
        "verifier_match_length": True,
        "verifier_rule": "none",
        "random_fraction": 0.75,
    },
    "mix": {
        "strategy": "accumulate_subsample",
        "unit": "tokens",
        "train_size": 3000,
        "train_size0": 10**6,  # the whole split
        "select": "verifier",
        "select_power": 2.0,
    },
    "train": {"init": "base", "budget": "epochs", "epochs": 0.5, "steps0": 40},
    "evaluate": {"metric_words": 400, "max_test_tokens": 0},  # the whole test split
}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("round2")
    train, test = small_corpus(root / "corpus")
    write_params(root, tiny_params(train, test, **ROUND2))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-m", "synthloop", "run"], cwd=root, capture_output=True, text=True, env=env, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    params = load_params(root / "params.yaml")
    return params, Layout.of(params, root)


def test_samples_cut_at_the_cap_are_marked_and_trained_without_an_end(project):
    params, lay = project
    rows = io.read_rows(lay.synthetic(1))
    tok = lm.load_tokenizer(lay.tokenizer)
    lengths = [len(ids) for ids in lm.encode(tok, [r["text"] for r in rows])]
    cut = [r["truncated"] for r in rows]
    assert sum(cut) > 0  # tiny tales are far longer than the cap: most samples are cut
    # a sample that ended before the cap is shorter than it (give or take the re-tokenization of its text)
    assert all(n < params.generate.max_new_tokens + 4 for n, c in zip(lengths, cut) if not c)
    assert all(n >= params.generate.max_new_tokens - 4 for n, c in zip(lengths, cut) if c)
    train = io.read_rows(lay.train_set(1))
    stream, skip = lm.pack_open(tok, [r["text"] for r in train], [bool(r.get("truncated")) for r in train])
    assert skip is not None and int(skip.sum()) == sum(bool(r.get("truncated")) for r in train)
    assert torch.all(stream[skip] == tok.sep)


def test_generation_0_takes_the_whole_split_and_later_ones_are_token_matched(project):
    params, lay = project
    assert len(io.read_rows(lay.train_set(0))) == len(io.read_rows(lay.real_train))
    tok = lm.load_tokenizer(lay.tokenizer)
    for k in (1, 2):
        mix = io.read_json(lay.mix_stats(k))
        tokens = mix["real_tokens"] + mix["synthetic_tokens"]
        longest = max(len(ids) + 1 for ids in lm.encode(tok, [r["text"] for r in io.read_rows(lay.train_set(k))]))
        assert 3000 <= tokens < 3000 + longest  # whole documents until the size: the last may pass it
        assert 0 < mix["synthetic_token_share"] < 1  # a mixed pool


def test_verifier_selection_prefers_real_rows(project):
    """Weighted by P(real)^2 from the model-feature verifier: more real tokens than the pool's share."""
    params, lay = project
    assert lay.verifier_model.is_file()
    tok = lm.load_tokenizer(lay.tokenizer)
    size = lambda rows: sum(len(ids) + 1 for ids in lm.encode(tok, [r["text"] for r in rows]))  # noqa: E731
    pool_share = 3000 / (3000 + size(io.read_rows(lay.pool(2))))  # real base: 3000 tokens; a uniform draw's real share
    mix = io.read_json(lay.mix_stats(2))
    assert 1 - mix["synthetic_token_share"] > pool_share


def test_epochs_budget_sets_the_steps_and_training_starts_at_generation_0(project):
    params, lay = project
    t0, t1 = io.read_json(lay.train_stats(0)), io.read_json(lay.train_stats(1))
    assert t0["train_steps"] == 40  # steps0 wins at generation 0
    tokens_per_step = params.train.batch_size * params.train.block_size
    assert t1["train_steps"] == max(round(0.5 * t1["train_stream_tokens"] / tokens_per_step), 6)
    assert t1["train_tokens"] == t1["train_steps"] * tokens_per_step
    assert t1["train_epochs"] == pytest.approx(t1["train_tokens"] / t1["train_stream_tokens"])


def test_random_grader_keeps_its_share_blind(project):
    params, lay = project
    grade = io.read_json(lay.grade_stats(1))
    assert grade["random_in"] > 0
    assert grade["random_dropped"] == grade["random_in"] - round(0.75 * grade["random_in"])


def test_evaluation_scores_the_whole_split_on_a_word_budget(project):
    params, lay = project
    tok = lm.load_tokenizer(lay.tokenizer)
    whole = len(lm.pack(tok, [r["text"] for r in io.read_rows(lay.real_test)]))
    for k in (0, 1, 2):
        m = io.read_json(lay.metrics(k))
        assert m["test_tokens"] == (whole - 1) // params.evaluate.block_size * params.evaluate.block_size
        assert m["metric_words"] == 400 and m["test_ce_gap"] == pytest.approx(m["test_ce"] - m["test_entropy"])
        timing = io.read_json(lay.timing(k))
        assert timing[f"evaluate{'0' if k == 0 else f'@{k}'}"]["cpu_s"] > 0
    summary = io.read_csv(lay.summary)
    assert [r["metric_words"] for r in summary] == ["400"] * 3 and summary[0]["distinct_2_real"]

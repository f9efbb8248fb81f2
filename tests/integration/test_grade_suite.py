"""The grade stage with every grader on, on a tiny project: scores, drops by reason, the audit."""

from __future__ import annotations

import json
import shutil

import pytest

from synthloop import io
from synthloop.config import GRADERS, parse_params
from synthloop.io import DataError
from synthloop.layout import Layout
from synthloop.runner import run_stage
from synthloop.stages.report import COLUMNS, GRADER_COLUMNS, summary_rows
from tests.conftest import small_corpus, tiny_params

ALL = ["filters", "dedup", "decontaminate", "self", "reference", "verifier", "judge"]
SCORES = {
    "filters": ["repetition", "garbage"],
    "dedup": ["dedup_sim"],
    "decontaminate": ["contamination"],
    "self": ["self_ppl"],
    "reference": ["ref_ppl"],
    "verifier": ["verifier_p"],
    "judge": ["judge_score"],
}


def grader_of(reason: str) -> str:
    if reason in ("too_short", "too_long", "repetitive", "garbage"):
        return "filters"
    return "decontaminate" if reason == "contaminated" else reason.split("_")[0]


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("grade-suite")
    train, test = small_corpus(root / "corpus")
    # the tiny gen-0 model's samples all sit above real text's reference band, so the
    # band would drop every one: the reference grader scores here, its rule is unit-tested
    raw = tiny_params(
        train,
        test,
        loop={"chain": {"1": 0, "2": 1}},
        grade={
            "steps": ALL,
            "max_garbage": 0.3,
            "reference_rule": "none",
            "verifier_rule": "resample",
            "verifier_fraction": 0.7,
            "judge_model_dir": "gen0",
            "judge_mode": "logits",
            "judge_min_score": 1.0,
        },
    )
    params = parse_params(raw)
    for name, gen in [("prepare", None), ("mix", 0), ("train", 0), ("generate", 1)]:
        run_stage(name, params, root, gen)
    stats = run_stage("grade", params, root, 1)
    return params, root, Layout.of(params, root), stats


def test_every_grader_scores_counts_and_is_audited(graded):
    params, _, lay, stats = graded
    rows = io.read_rows(lay.graded(1))
    assert stats["n_graded"] == len(rows) == params.generate.num_samples
    assert stats["filters_in"] == len(rows)
    for before, after in zip(ALL, ALL[1:]):  # each grader sees what the one before kept
        assert stats[f"{after}_in"] == stats[f"{before}_in"] - stats[f"{before}_dropped"]
    drops = sum(v for k, v in stats.items() if k.startswith("dropped_"))
    assert stats["n_kept"] + drops == len(rows) == stats["n_kept"] + sum(stats[f"{g}_dropped"] for g in ALL)
    assert stats["verifier_dropped"] > 0 and stats["n_kept"] > 0
    for row in rows:
        reached = ALL if row["kept"] else ALL[: ALL.index(grader_of(row["dropped_by"])) + 1]
        for grader in reached:
            assert all(key in row["scores"] for key in SCORES[grader]), (grader, row)
    for grader in ("filters", "self", "reference", "verifier", "judge"):
        assert 0 <= stats[f"audit_{grader}_auc"] <= 1
        assert 0 <= stats[f"audit_{grader}_real_keep"] <= 1
        assert stats[f"audit_{grader}_n_real"] == params.grade.audit_size
    assert not any(k.startswith(("audit_dedup", "audit_decontaminate")) for k in stats)
    assert -1 <= stats["audit_corr_self_verifier"] <= 1
    assert stats["audit_corr_self_reference"] == pytest.approx(1.0)  # gen 1: the writer is gen 0
    assert stats["judge_ok"] == stats["judge_in"]
    assert all(stats[f"{g}_per_s"] > 0 for g in ALL)
    on_disk = io.read_json(lay.grade_stats(1))
    assert not any(k.endswith("_per_s") for k in on_disk)  # timings stay out of the DVC-tracked file
    assert on_disk == {k: v for k, v in stats.items() if not k.endswith("_per_s")}


def test_verifier_is_stored_as_json_and_trained_once(graded):
    _, _, lay, _ = graded
    obj = json.loads(lay.verifier.read_text())
    assert obj["format"] == "synthloop-verifier/1" and obj["info"]["n_synthetic"] > 0
    assert list((lay.judge_shards(1) / "samples").glob("shard-*.jsonl"))


def test_grading_again_is_identical_and_reuses_the_judge_shards(graded):
    params, root, lay, _ = graded
    before = lay.graded(1).read_bytes()
    shards = {p: p.stat().st_mtime_ns for p in lay.judge_shards(1).rglob("shard-*.jsonl")}
    lay.graded(1).unlink()
    run_stage("grade", params, root, 1)
    assert lay.graded(1).read_bytes() == before
    assert {p: p.stat().st_mtime_ns for p in lay.judge_shards(1).rglob("shard-*.jsonl")} == shards


def test_next_generation_drops_what_an_earlier_one_kept(graded, tmp_path):
    """gen 2 gets gen 1's samples again: dedup drops every one that gen 1 kept, reusing the verifier."""
    params, root, lay, _ = graded
    shutil.copytree(lay.model(0), lay.model(1))  # stands in for a trained gen-1 model
    rows = io.read_rows(lay.synthetic(1))
    io.write_rows(
        lay.synthetic(2), [{**r, "id": r["id"].replace("g1:", "g2:"), "generation": 2, "parent": 1} for r in rows]
    )
    verifier_before = lay.verifier.stat().st_mtime_ns
    stats = run_stage("grade", params, root, 2)
    kept1 = {r["text"] for r in io.read_rows(lay.graded(1)) if r["kept"]}
    graded2 = io.read_rows(lay.graded(2))
    assert all(r["dropped_by"] in ("dedup_exact", "dedup_near") for r in graded2 if r["text"] in kept1)
    assert stats["dedup_dropped"] >= len(kept1)
    assert lay.verifier.stat().st_mtime_ns == verifier_before


def test_report_columns_tolerate_graders_that_are_off(graded):
    params, root, lay, _ = graded
    for k in (0, 1):  # report needs evaluate and mix outputs: stand-ins are enough for its reader
        io.write_json(lay.metrics(k), {c: 1.0 for c in COLUMNS if c not in GRADER_COLUMNS})
        io.write_json(lay.mix_stats(k), {"n_train": 1})
    rows = summary_rows(lay, 1)
    assert rows[0]["audit_verifier_auc"] == "" and rows[0]["dedup_dropped"] == ""  # gen 0 is not graded
    assert rows[1]["audit_verifier_auc"] == io.read_json(lay.grade_stats(1))["audit_verifier_auc"]
    assert set(GRADER_COLUMNS) <= set(COLUMNS) and len(GRADERS) == 8


def test_failed_http_judge_requests_are_asked_again_by_the_next_run(graded, tmp_path):
    """Through the grade stage (in a copy of the project): a judge server that fails every request
    leaves no verdict on disk; once it answers, grading again asks it and stores the verdicts."""
    from tests.judge_server import JudgeServer, Reply, completion

    params, root, _, _ = graded
    root = tmp_path / "project"
    shutil.copytree(graded[1], root)
    lay = Layout.of(params, root)
    state = {"up": False}

    def answer(req) -> Reply:
        return Reply(body=completion(req.route, "SCORE: 7")) if state["up"] else Reply(503, {"error": "down"})

    with JudgeServer(answer) as server:
        grade = params.grade.model_copy(
            update={
                "steps": ["judge"],
                "judge_backend": "http",
                "judge_mode": "generate",
                "judge_base_url": server.url,
                "judge_model": "m",
                "judge_retries": 0,
                "judge_unparsed": "keep",
            }
        )
        http = params.model_copy(update={"grade": grade})
        shutil.rmtree(lay.judge_shards(1), ignore_errors=True)
        with pytest.raises(DataError, match=r"judge endpoint .*: 10 requests in a row failed \(last: HTTP 503\)"):
            run_stage("grade", http, root, 1)  # the breaker: judge_max_failures (10) failures in a row
        lenient = params.model_copy(update={"grade": grade.model_copy(update={"judge_max_failures": 10_000})})
        failed = run_stage("grade", lenient, root, 1)
        assert failed["judge_error"] == failed["judge_in"] > 0 and failed.get("judge_ok", 0) == 0
        assert not list(lay.judge_shards(1).rglob("shard-*.jsonl"))  # no failure was cached as a verdict
        state["up"] = True
        again = run_stage("grade", http, root, 1)
    assert again["judge_ok"] == again["judge_in"] and again["judge_error"] == 0
    assert list(lay.judge_shards(1).rglob("shard-*.jsonl"))
    assert {r["scores"]["judge_score"] for r in io.read_rows(lay.graded(1))} == {7.0}

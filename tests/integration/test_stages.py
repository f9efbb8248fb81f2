"""Each stage on tiny real data through run_stage, tracked in a temporary MLflow store."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from synthloop import io
from synthloop.config import parse_params
from synthloop.io import DataError
from synthloop.layout import Layout
from synthloop.runner import run_stage
from synthloop.tracking import TAG_GEN, TAG_LOOP, LoopTracker
from tests.conftest import small_corpus, tiny_params

ORDER = [
    ("prepare", None),
    ("mix", 0),
    ("train", 0),
    ("evaluate", 0),
    ("generate", 1),
    ("grade", 1),
    ("mix", 1),
    ("train", 1),
    ("evaluate", 1),
    ("report", None),
]


@pytest.fixture(scope="module")
def loop_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    train, test = small_corpus(root / "corpus")
    raw = tiny_params(train, test, loop={"chain": {"1": 0}}, tracking={"uri": f"sqlite:///{root / 'mlflow.db'}"})
    params = parse_params(raw)
    tracker = LoopTracker(params, root, loop_id="test-loop")
    results = {(name, gen): run_stage(name, params, root, gen, tracker) for name, gen in ORDER}
    return params, root, Layout.of(params, root), tracker, results


def test_prepare_writes_splits_and_tokenizer(loop_run):
    params, _, lay, _, results = loop_run
    assert results[("prepare", None)]["n_train_docs"] == 200
    assert results[("prepare", None)]["n_test_docs"] == 20
    rows = io.read_rows(lay.real_train)
    assert {r["source"] for r in rows} == {"real"} and rows[0]["id"] == "real:0"
    assert json.loads(lay.tokenizer.read_text())["model"]["type"] == "BPE"


def test_generate_cuts_at_end_of_text_and_keeps_provenance(loop_run):
    params, _, lay, _, results = loop_run
    rows = io.read_rows(lay.synthetic(1))
    assert len(rows) == params.generate.num_samples == results[("generate", 1)]["n_generated"]
    assert all(r["source"] == "synthetic" and r["generation"] == 1 and r["parent"] == 0 for r in rows)
    assert not any("<|endoftext|>" in r["text"] for r in rows)


def test_grade_counts_every_drop(loop_run):
    _, _, lay, _, results = loop_run
    rows = io.read_rows(lay.graded(1))
    stats = results[("grade", 1)]
    dropped = sum(v for k, v in stats.items() if k.startswith("dropped_"))
    assert stats["n_kept"] + dropped == len(rows) == stats["n_graded"]
    assert all("self_ppl" in r["scores"] for r in rows if r["kept"])


def test_mix_replace_is_all_synthetic_with_provenance(loop_run):
    _, _, lay, _, results = loop_run
    assert results[("mix", 0)]["synthetic_share"] == 0.0
    train = io.read_rows(lay.train_set(1))
    assert results[("mix", 1)]["synthetic_share"] == 1.0
    assert all(r["kept"] and r["generation"] == 1 and "self_ppl" in r["scores"] for r in train)


def test_train_saves_safetensors_model(loop_run):
    _, _, lay, _, results = loop_run
    assert (lay.model(1) / "model.safetensors").is_file()
    assert (lay.model(1) / "tokenizer.json").is_file()
    assert results[("train", 1)]["train_loss"] > 0


def test_evaluate_and_report(loop_run):
    _, _, lay, _, results = loop_run
    m = results[("evaluate", 1)]
    assert m["test_ppl"] == pytest.approx(__import__("math").exp(m["test_ce"]))
    assert 0 < m["distinct_1"] <= 1 and m["unigram_kl"] > 0
    header = lay.summary.read_text().splitlines()[0].split(",")
    for col in [
        "generation",
        "test_ce",
        "test_ppl",
        "distinct_1",
        "distinct_2",
        "unigram_kl",
        "n_train",
        "synthetic_share",
        "n_generated",
        "n_kept",
    ]:
        assert col in header
    assert len(lay.summary.read_text().splitlines()) == 3
    assert lay.plot.read_bytes()[:4] == b"\x89PNG"


def test_mlflow_has_params_metrics_children_and_hashes(loop_run):
    params, _, lay, tracker, _ = loop_run
    client = MlflowClient(tracker.uri)
    parent = client.get_run(tracker.parent_id)
    assert parent.data.params["mix.strategy"] == "replace"
    assert parent.data.params["loop.generations"] == "1"
    assert parent.data.tags[TAG_LOOP] == "test-loop"
    history = client.get_metric_history(tracker.parent_id, "test_ppl")
    assert sorted(m.step for m in history) == [0, 1]
    # each generation's grader audit is charted on the loop run too, step = generation
    assert [m.step for m in client.get_metric_history(tracker.parent_id, "grade.audit_self_auc")] == [1]
    assert [m.step for m in client.get_metric_history(tracker.parent_id, "grade.kept_share")] == [1]
    children = client.search_runs([tracker.experiment_id], f"tags.`mlflow.parentRunId` = '{tracker.parent_id}'")
    by_gen = {r.data.tags[TAG_GEN]: r for r in children}
    assert set(by_gen) == {"0", "1"}
    assert by_gen["1"].data.tags["dvc.train_set.md5"] == io.md5_file(lay.train_set(1))
    assert by_gen["1"].info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(by_gen["1"].info.run_id)}
    assert {"model", "metrics.json", "samples.jsonl"} <= artifacts
    assert client.get_metric_history(by_gen["0"].info.run_id, "train.train_loss")


def test_grade_that_keeps_nothing_fails_and_writes_nothing(loop_run, tmp_path):
    params, root, lay, _, _ = loop_run
    strict = parse_params({**params.model_dump(), "grade": {**params.grade.model_dump(), "min_words": 900}})
    before = lay.graded(1).read_bytes()
    with pytest.raises(DataError, match="kept 0 of"):
        run_stage("grade", strict, root, 1)
    assert lay.graded(1).read_bytes() == before
    assert not list(lay.gen(1).glob(".*.tmp"))


def test_generate_over_http_counts_tokens_itself_when_the_server_sends_no_usage(loop_run, tmp_path):
    """A server without `usage` fields: the loop's tokenizer counts prompt and completion tokens."""
    import shutil

    from synthloop.models import lm
    from tests.judge_server import JudgeServer, Reply, completion

    params, root, _, _, _ = loop_run
    copy = tmp_path / "project"
    shutil.copytree(root, copy)
    with JudgeServer(lambda req: Reply(body=completion("completions", " the king and the fox"))) as server:
        http = params.model_copy(
            update={
                "generate": params.generate.model_copy(
                    update={
                        "source": "teacher",
                        "backend": "http",
                        "base_url": server.url,
                        "model": "m",
                        "prompt": "prefix",
                    }
                )
            }
        )
        stats = run_stage("generate", http, copy, 1)
    lay = Layout.of(http, copy)
    rows = io.read_rows(lay.synthetic(1))
    tok = lm.load_tokenizer(lay.tokenizer)
    assert {r["text"] for r in rows} == {" the king and the fox"} and len(rows) == params.generate.num_samples
    assert stats["completion_tokens"] == len(rows) * len(lm.encode(tok, [" the king and the fox"])[0])
    assert stats["prompt_tokens"] == sum(len(ids) for ids in lm.encode(tok, [r["prompt"] for r in rows]))
    assert io.read_json(lay.generate_stats(1))["completion_tokens"] == stats["completion_tokens"]

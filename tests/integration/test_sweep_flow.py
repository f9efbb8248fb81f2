"""A 2-strategy x 2-generation sweep of the tiny profile through Prefect: summary, report, MLflow, resume."""

from __future__ import annotations

import csv
import os

import pytest
import yaml
from mlflow.tracking import MlflowClient

from flows.sweep import sweep
from tests.conftest import small_corpus, tiny_params, write_params


@pytest.fixture(scope="module")
def harness(ui):
    """Flows run in-process against the session's Prefect server (the shared `synthloop ui`'s)."""
    return ui.api


def test_sweep_compares_strategies_and_resumes_without_recomputing(harness, tmp_path):
    train, test = small_corpus(tmp_path / "corpus", n_train=120, n_test=10)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    write_params(tmp_path, tiny_params(train, test, tracking={"uri": uri}))
    # an arm may name its own seeds (here the same one, to keep the test to two loops)
    spec = {
        "name": "two",
        "seeds": [0],
        "arms": {"replace": {}, "accumulate": {"mix.strategy": "accumulate", "seeds": [0]}},
        "compare": [["replace", "accumulate"]],  # the ordering its report tests
    }
    (tmp_path / "two.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))

    sweep_id = sweep("two.yaml", root=str(tmp_path))

    folder = tmp_path / "sweeps" / "two"
    rows = list(csv.DictReader((folder / "summary.csv").open()))
    assert [(r["arm"], r["generation"]) for r in rows] == [
        ("replace", "0"),
        ("replace", "1"),
        ("replace", "2"),
        ("accumulate", "0"),
        ("accumulate", "1"),
        ("accumulate", "2"),
    ]
    assert {r["mix.strategy"] for r in rows} == {"replace", "accumulate"}
    by = {(r["arm"], r["generation"]): r for r in rows}
    assert float(by["accumulate", "2"]["n_train"]) > float(by["replace", "2"]["n_train"])
    assert by["replace", "0"]["test_ce"] == by["accumulate", "0"]["test_ce"]  # generation 0 is shared
    runs = folder / "runs"
    weights = [runs / f"{a}-s0" / "gens" / "0" / "model" / "model.safetensors" for a in ("replace", "accumulate")]
    assert os.stat(weights[0]).st_ino == os.stat(weights[1]).st_ino  # hard link, not a second training

    report = (folder / "report" / "report.md").read_text()
    assert "| replace | 1 |" in report and "| accumulate | 1 |" in report
    assert "| replace − accumulate |" in report and "accumulate − replace" not in report  # the spec's compare
    assert "![frontier](frontier.png)" in report  # CPU-seconds from each generation's .timing.json
    for png in ("metrics.png", "delta.png", "ref_ppl_hist.png", "frontier.png"):
        assert (folder / "report" / png).stat().st_size > 10_000

    client = MlflowClient(uri)
    children = client.search_runs(
        [client.get_run(sweep_id).info.experiment_id], f"tags.`mlflow.parentRunId` = '{sweep_id}'"
    )
    assert sorted(c.info.run_name for c in children) == ["two/accumulate-s0", "two/replace-s0"]
    assert all("test_ppl" in c.data.metrics for c in children)
    assert "report/report.md" in {a.path for a in client.list_artifacts(sweep_id, "report")}

    summary_before = (folder / "summary.csv").read_bytes()
    mtimes = {p: p.stat().st_mtime_ns for p in runs.rglob("*") if p.is_file() and p.name != "summary.csv"}
    assert sweep("two.yaml", root=str(tmp_path)) == sweep_id  # same MLflow run: resumed, not new
    assert (folder / "summary.csv").read_bytes() == summary_before
    rewritten = [p for p, t in mtimes.items() if p.stat().st_mtime_ns != t and "reports" not in p.parts]
    assert rewritten == []  # every stage was reused from the ledger

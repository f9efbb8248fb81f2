"""The issue's done-when, where users meet it: `synthloop run` on a tiny loop whose data a fixed
teacher writes through llama.cpp's real OpenAI-compatible server (SmolLM2). summary.csv and MLflow
show the tokens and cost of every generation; a run whose server is SIGKILLed halfway stops with
one line, keeps its finished shards, and once the server is back resumes to the same bytes as an
uninterrupted run (each request carries its own seed)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from synthloop.backends.serve import LlamaServer
from tests.conftest import GGUF, copy_project, free_port
from tests.e2e.test_kill_resume import hashes, run

pytestmark = pytest.mark.slow
PROFILE = "teacher.yaml"
PRICES = [0.5, 2.0]  # per million prompt / completion tokens


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """Its own server (the kill test kills it), on one port for every run: the port is in the params."""
    with LlamaServer(GGUF, "smollm2", free_port(), tmp_path_factory.mktemp("teacher")) as server:
        yield server


def make_project(tmp_path: Path, url: str) -> Path:
    project = copy_project(tmp_path)
    raw = yaml.safe_load((project / "profiles" / "tiny.yaml").read_text())
    raw["loop"]["chain"] = {"1": 0}
    raw["generate"].update(
        source="teacher", backend="http", base_url=url, model="smollm2", route="chat", prompt="template",
        template="prompts/fairytale.txt", topics="prompts/topics.txt", num_samples=12, max_new_tokens=24,
        batch_size=4, price_per_mtok=PRICES, retries=1, max_failures=3,
    )  # fmt: skip
    (project / PROFILE).write_text(yaml.safe_dump(raw, sort_keys=False))
    return project


@pytest.fixture(scope="module")
def reference(tmp_path_factory, teacher, ui):
    project = make_project(tmp_path_factory.mktemp("ref"), teacher.url)
    out = run(["synthloop", "run", "--params", PROFILE], project, PREFECT_API_URL=ui.api)
    assert out.returncode == 0, out.stderr[-3000:]
    return project


def test_teacher_loop_records_tokens_and_cost_in_summary_and_mlflow(reference):
    import csv

    rows = list(csv.DictReader((reference / "reports" / "summary.csv").open()))
    assert [r["generation"] for r in rows] == ["0", "1"]
    assert rows[0]["completion_tokens"] == "0" and rows[0]["cost"] == "0"
    for row in rows[1:]:
        prompt, completion = int(row["prompt_tokens"]), int(row["completion_tokens"])
        assert 12 <= completion <= 12 * 24 and prompt > 12 * 10 and row["budget_hit"] == "0"
        assert float(row["cost"]) == pytest.approx((prompt * PRICES[0] + completion * PRICES[1]) / 1e6, rel=1e-4)
    synthetic = [yaml.safe_load(line) for line in (reference / "gens" / "1" / "synthetic.jsonl").open()]
    assert {r["writer"] for r in synthetic} == {f"teacher:smollm2@{reference_url(reference)}"}
    assert all(r["parent"] is None and r["prompt"].startswith("Write a short fairy tale") for r in synthetic)

    client = MlflowClient(f"sqlite:///{reference / '.mlflow' / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=100)
    gens = {r.data.tags.get("synthloop.generation"): r for r in runs}
    gen1 = gens["1"].data.metrics  # the generation's run: each stage's numbers, prefixed with the stage
    assert gen1["generate.completion_tokens"] == int(rows[1]["completion_tokens"]) and gen1["generate.cost"] > 0
    loop = next(r for r in runs if r.data.tags.get("synthloop.generation") == "loop")
    history = client.get_metric_history(loop.info.run_id, "generate.cost")
    assert [m.step for m in history] == [1] and history[0].value == pytest.approx(float(rows[1]["cost"]), rel=1e-4)


def reference_url(project: Path) -> str:
    return yaml.safe_load((project / PROFILE).read_text())["generate"]["base_url"]


def test_server_killed_halfway_stops_with_one_line_and_resumes_to_the_same_bytes(tmp_path, teacher, reference, ui):
    project = make_project(tmp_path, teacher.url)
    first_shard = project / "gens" / "1" / "sampling" / "shard-00000.jsonl"

    def kill_after_the_first_shard():
        deadline = time.monotonic() + 600
        while not first_shard.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        teacher.kill()

    killer = threading.Thread(target=kill_after_the_first_shard, daemon=True)
    killer.start()
    try:
        out = run(["synthloop", "run", "--params", PROFILE], project, PREFECT_API_URL=ui.api)
    finally:
        killer.join(timeout=5)
        teacher.start()  # back, on the same port
    assert out.returncode == 1, out.stderr[-3000:]
    line = out.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: generate endpoint {teacher.url}") and "rerun" in line, line
    assert first_shard.exists() and not (project / "gens" / "1" / "synthetic.jsonl").exists()
    out = run(["synthloop", "run", "--params", PROFILE], project, PREFECT_API_URL=ui.api)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "resumed" in out.stderr and "of 3 shards" in out.stderr
    assert hashes(project) == hashes(reference)

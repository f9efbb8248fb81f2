"""Load: many loop runs queued at once on one `synthloop ui`, with a concurrency limit of 2.

The session's real `synthloop ui` with SYNTHLOOP_LOOP_CONCURRENCY=2 (Prefect server,
MLflow UI, served deployments) on free ports, in a copy of the project. RUNS runs of
loop/default (4; SYNTHLOOP_LOAD_RUNS=20 for the README's measurement) are submitted
through the API in one go, seeds 0..RUNS-1 (distinct params, so none is restored from
DVC's run-cache). Each is a smaller-than-tiny loop (the tiny profile on the first
documents of the corpus, 1 generation, fewer steps and samples, 1 thread per run), so
the test measures queueing and bookkeeping, not training. Checked: all complete; never
more than 2 run at once (sampled while polling, and from the runs' start/end times afterwards); each run has its own
workspace, dvc.lock, summary and MLflow run, with its own seed's params and metrics,
and the results differ between seeds.
"""

from __future__ import annotations

import csv
import os
import time
from collections import Counter

import pytest
import yaml

from synthloop.config import parse_params
from tests.conftest import small_corpus, tiny_params
from tests.ui_proc import LOOP_LIMIT, form_parameters, mlflow_loop_run

pytestmark = pytest.mark.slow
RUNS = int(os.environ.get("SYNTHLOOP_LOAD_RUNS", "4"))  # 20 for the README's load measurement
LIMIT, DEADLINE_S = LOOP_LIMIT, 20 * 60


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A smaller-than-tiny loop: the tiny profile on the first documents, 1 generation, few steps, 1 thread."""
    train, test = small_corpus(tmp_path_factory.mktemp("load") / "corpus", n_train=300, n_test=20)
    raw = tiny_params(
        train,
        test,
        compute={"threads": 1},
        loop={"chain": {"1": 0}},
        train={"steps": 10, "warmup_steps": 2},
        generate={"num_samples": 16},
        evaluate={"num_samples": 8, "max_test_tokens": 1000},
        mix={"train_size": 32},
    )
    return parse_params(raw, "load test")


def max_overlap(intervals) -> int:
    """The most [start, end] intervals open at one moment (an end before a start at the same instant)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda ev: (ev[0], ev[1]))
    open_, most = 0, 0
    for _, step in events:
        open_ += step
        most = max(most, open_)
    return most


def test_runs_queued_at_once_all_complete_two_at_a_time(ui, small):
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.deployments import run_deployment

    with get_client(sync_client=True) as client:
        dep = client.read_deployment_by_name("loop/default")
    assert dep.global_concurrency_limit is not None and dep.global_concurrency_limit.limit == LIMIT
    assert f"at most {LIMIT} loop/default run(s) at once" in ui.output()

    submitted = time.time()
    flow_runs = {
        seed: run_deployment(
            "loop/default", parameters=form_parameters(small, loop={"seed": seed, "generations": 1}), timeout=0
        ).id
        for seed in range(RUNS)
    }
    print(f"\n{RUNS} runs submitted in {time.time() - submitted:.1f} s")
    seed_of = {rid: seed for seed, rid in flow_runs.items()}
    assert len(seed_of) == RUNS

    running_max, states = 0, Counter()
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(seed_of))), limit=RUNS
            )
            states = Counter(r.state.name for r in runs)
            running_max = max(running_max, states["Running"])
            if len(runs) == RUNS and all(r.state.is_final() for r in runs):
                break
            assert time.time() - submitted < DEADLINE_S, f"after {DEADLINE_S} s: {dict(states)}\n{ui.logs()}"
            time.sleep(2)
        history = {r.id: [s.name for s in client.read_flow_run_states(r.id)] for r in runs}
    failed = [f"seed {seed_of[r.id]}: {r.state.name}: {r.state.message}" for r in runs if not r.state.is_completed()]
    assert not failed, "\n".join(failed) + "\n" + ui.logs()

    last_end = max(r.end_time for r in runs).timestamp()
    total = last_end - submitted
    durations = [(r.end_time - r.start_time).total_seconds() for r in runs]
    overlap = max_overlap([(r.start_time, r.end_time) for r in runs])
    waited = sum("AwaitingConcurrencySlot" in h for h in history.values())
    print(
        f"load: {RUNS} runs, limit {LIMIT}: all Completed {total:.0f} s ({total / 60:.1f} min) after submission; "
        f"per run {sum(durations) / RUNS:.1f} s running (min {min(durations):.1f}, max {max(durations):.1f}), "
        f"{total / RUNS:.1f} s of wall time per run; max Running seen {running_max}, max overlap {overlap}; "
        f"{waited} runs waited in AwaitingConcurrencySlot"
    )
    assert running_max <= LIMIT and overlap <= LIMIT, (running_max, overlap)
    assert overlap == LIMIT, "the runs never ran two at a time"
    assert waited >= RUNS - LIMIT, history  # the limit, not luck, kept them apart

    workspaces, mlflow_ids, test_ce0, models = set(), set(), {}, set()
    for run in runs:
        seed = seed_of[run.id]
        ws = ui.project / ".synthloop" / "runs" / str(run.id)
        assert yaml.safe_load((ws / "params.yaml").read_text())["loop"] == {"seed": seed, "chain": {"1": 0}}
        lock = yaml.safe_load((ws / "dvc.lock").read_text())["stages"]
        assert lock["train0"]["params"]["params.yaml"]["loop.seed"] == seed
        models.add(next(o["md5"] for o in lock["train0"]["outs"]))
        with (ws / "reports" / "summary.csv").open() as f:
            summary = {int(row["generation"]): float(row["test_ce"]) for row in csv.DictReader(f)}
        assert sorted(summary) == [0, 1] and not (ws / "gens" / "2").exists()

        client, loop = mlflow_loop_run(ui.store, run.id)
        assert loop.data.params["loop.seed"] == str(seed) and loop.data.params["loop.generations"] == "1"
        assert loop.data.tags["synthloop.dvc_workspace"] == str(ws)
        history_ce = {m.step: m.value for m in client.get_metric_history(loop.info.run_id, "test_ce")}
        assert history_ce == pytest.approx(summary, rel=1e-5), (seed, history_ce, summary)  # its own numbers
        workspaces.add(ws)
        mlflow_ids.add(loop.info.run_id)
        test_ce0[seed] = summary[0]
    assert len(workspaces) == len(mlflow_ids) == RUNS
    assert len(set(test_ce0.values())) == RUNS and len(models) == RUNS, test_ce0  # every seed its own result
    assert not (ui.project / "gens").exists() and not (ui.project / "dvc.lock").exists()  # the project is untouched

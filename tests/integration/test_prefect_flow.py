"""The loop flow in-process on a Prefect test server: tasks per stage, artifacts, MLflow link."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterId

from flows.loop import loop
from synthloop.tracking import TAG_PREFECT
from tests.conftest import small_corpus, tiny_params, write_params


@pytest.fixture(scope="module")
def harness(ui):
    """Flows run in-process against the session's Prefect server (the shared `synthloop ui`'s)."""
    return ui.api


def test_loop_flow_runs_every_stage_as_a_task(harness, tmp_path):
    train, test = small_corpus(tmp_path / "corpus", n_train=120, n_test=10)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    write_params(tmp_path, tiny_params(train, test, loop={"chain": {"1": 0}}, tracking={"uri": uri}))
    state = loop("params.yaml", root=str(tmp_path), return_state=True)
    assert state.is_completed(), state.message
    run_id = state.state_details.flow_run_id
    parent_id = state.result()

    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    names = sorted(t.name for t in tasks)
    assert len(names) == 10  # prepare, 3 for gen 0, 5 for gen 1, report
    assert "generate@1" in names and "train0" in names and "report" in names  # the stage ids DVC uses
    assert all(t.state.is_completed() for t in tasks)
    keys = {a.key for a in artifacts}
    assert {"generation-0", "generation-1", "summary", "mlflow-run", "collapse-plot", "loop-progress"} <= keys
    md = next(a for a in artifacts if a.key == "generation-1").data
    assert "test_ppl" in md and "## Samples" in md

    run = MlflowClient(uri).get_run(parent_id)
    assert run.data.tags[TAG_PREFECT] == str(run_id)
    assert "test_ppl" in run.data.metrics
    assert not (tmp_path / "dvc.lock").exists()  # no DVC project here: nothing recorded


def test_failing_stage_fails_the_flow_with_one_line_cause(harness, tmp_path):
    train, test = small_corpus(tmp_path / "corpus", n_train=120, n_test=10)
    raw = tiny_params(
        train,
        test,
        loop={"chain": {"1": 0}},
        grade={"min_words": 900},
        tracking={"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
    )
    write_params(tmp_path, raw)
    state = loop("params.yaml", root=str(tmp_path), return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match="kept 0 of"):
        state.result()

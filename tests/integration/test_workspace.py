"""Runs from the UI get their own workspaces: layout, two runs at once, and `synthloop ui`'s bad input.

The concurrent runs go through a real `synthloop ui` (Prefect server, MLflow UI,
served deployments) and the Prefect API, as a user's two clicks would.
"""

from __future__ import annotations

import contextlib
import os
import subprocess

import pytest
import yaml

from synthloop import workspace
from synthloop.config import load_params
from tests.conftest import copy_project
from tests.ui_proc import BIN, UiProcess, artifacts, form_parameters, mlflow_loop_run, wait_final


def test_workspace_has_its_params_dvc_repo_and_the_shared_cache(tmp_path):
    project = copy_project(tmp_path)
    params = load_params(project / "profiles" / "tiny.yaml")
    ws = workspace.create(project, "run-1", params)
    assert ws.root == project / ".synthloop" / "runs" / "run-1"
    raw = yaml.safe_load(ws.params_file.read_text())
    assert raw["data"]["corpus"] == str((project / "../shared/corpora/fairytales/train.txt").resolve())
    assert os.path.isabs(raw["data"]["test_corpus"]) and raw["paths"]["gens"] == "gens"
    assert (ws.root / "dvc.yaml").read_text() == (project / "dvc.yaml").read_text()
    assert (ws.root / "synthloop" / "stages" / "train.py").is_file() and not list(
        ws.root.glob("synthloop/**/__pycache__")
    )
    config = (ws.root / ".dvc" / "config").read_text()
    assert "no_scm = true" in config and f"dir = {project / '.dvc' / 'cache'}" in config

    from dvc.repo import Repo

    with contextlib.chdir(ws.root), Repo(str(ws.root)) as repo:
        assert repo.root_dir == str(ws.root)
        assert repo.cache.legacy.path == str(project / ".dvc" / "cache")
        assert "generate@2" in {s.addressing for s in repo.index.stages}
    with contextlib.chdir(project), Repo(str(project)) as repo:  # the project's DVC does not see workspaces
        assert all(".synthloop" not in s.path for s in repo.index.stages)


def logs(flow_run_id) -> list[str]:
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with get_client(sync_client=True) as client:
        return [
            entry.message
            for entry in client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        ]


def _form(ui: UiProcess, seed: int, strategy: str) -> dict:
    """The tiny profile's form, 1 generation, this seed and strategy (the UI's defaults are params.yaml's)."""
    tiny = load_params(ui.project / "profiles" / "tiny.yaml")
    return form_parameters(tiny, loop={"seed": seed, "generations": 1}, mix={"strategy": strategy})


@pytest.mark.slow
def test_two_runs_at_once_keep_their_own_files_and_records(ui):
    from prefect.deployments import run_deployment

    wanted = {(0, "replace"), (1, "accumulate")}
    submitted = [
        run_deployment("loop/default", parameters=_form(ui, seed, strategy), timeout=0)
        for seed, strategy in sorted(wanted)
    ]
    runs = [wait_final(r.id, timeout=600) for r in submitted]
    for run in runs:
        assert run.state.is_completed(), f"{run.state.name}: {run.state.message}\n{ui.logs()}"
    starts, ends = sorted(r.start_time for r in runs), sorted(r.end_time for r in runs)
    assert starts[1] < ends[0], "the runs did not overlap"

    seen, mlflow_ids = set(), set()
    for run in runs:
        ws = ui.project / ".synthloop" / "runs" / str(run.id)
        params = yaml.safe_load((ws / "params.yaml").read_text())
        got = (params["loop"]["seed"], params["mix"]["strategy"])
        seen.add(got)
        assert params["loop"]["chain"] == {"1": 0}
        lock = yaml.safe_load((ws / "dvc.lock").read_text())["stages"]
        assert lock["mix@1"]["params"]["params.yaml"]["mix.strategy"] == got[1]  # the exact keys it reads
        assert (ws / "reports" / "summary.csv").is_file() and (ws / "gens" / "1" / "model").is_dir()
        assert not (ws / "gens" / "2").exists()
        client, loop = mlflow_loop_run(ui.store, run.id)
        assert loop.data.params["mix.strategy"] == got[1] and loop.data.params["loop.seed"] == str(got[0])
        assert loop.data.tags["synthloop.dvc_workspace"] == str(ws)
        mlflow_ids.add(loop.info.run_id)
        assert "mlflow-run" in artifacts(run.id)
        assert any("stage train@1: done" in line for line in logs(run.id))  # stage logs reach the UI
    assert seen == wanted and len(mlflow_ids) == 2
    assert not (ui.project / "gens").exists() and not (ui.project / "dvc.lock").exists()  # the project is untouched


@pytest.mark.slow
def test_a_cross_field_error_fails_the_run_with_one_line_before_any_stage(ui):
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.deployments import run_deployment

    with get_client(sync_client=True) as client:
        schema = client.read_deployment_by_name("loop/default").parameter_openapi_schema
    train = dict(schema["properties"]["train"]["default"], warmup_steps=500)  # in bounds, but >= steps
    run = wait_final(run_deployment("loop/default", parameters={"train": train}, timeout=0).id, timeout=300)
    assert run.state.is_failed()
    assert "form: train.warmup_steps (500) must be below train.steps (300)" in run.state.message
    with get_client(sync_client=True) as client:
        assert client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))) == []
    assert not (ui.project / ".synthloop" / "runs" / str(run.id)).exists()


@pytest.mark.slow
def test_out_of_range_with_validation_switched_off_still_fails_before_any_stage(ui):
    """The form's "Validate parameters" box off: the flow's own (pydantic) check refuses the value."""
    import httpx
    from prefect import get_client

    with get_client(sync_client=True) as client:
        dep = client.read_deployment_by_name("loop/default")
    mix = dict(dep.parameter_openapi_schema["properties"]["mix"]["default"], real_fraction=1.5)
    created = httpx.post(
        f"{ui.api}/deployments/{dep.id}/create_flow_run",  # what the unticked box sends
        json={"parameters": {"mix": mix}, "enforce_parameter_schema": False},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    run = wait_final(created.json()["id"], timeout=300)
    assert run.state.is_failed() and "real_fraction" in run.state.message, run.state.message
    assert not (ui.project / ".synthloop" / "runs" / str(run.id)).exists()


@pytest.mark.slow
def test_a_taken_port_is_one_line_and_exit_2(ui):
    out = subprocess.run(
        [str(BIN / "synthloop"), "ui", "--prefect-port", str(ui.prefect_port)],
        cwd=ui.project,
        env=ui.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == f"error: port {ui.prefect_port} on 127.0.0.1 is in use; pass --prefect-port"


# Ctrl-C stopping everything `synthloop ui` started is checked when the session's `ui` fixture ends
# (tests/conftest.py, tests/ui_proc.assert_stopped_cleanly).

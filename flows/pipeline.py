"""Prefect only: thin tasks around run_stage, and the loop flow. No logic lives here."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from . import io, versioning
from .config import Params, load_params
from .layout import Layout
from .runner import run_stage
from .stages.report import read_summary
from .tracking import LoopTracker


@task(task_run_name="{name}[gen {gen}]", cache_policy=NO_CACHE, persist_result=False)
def stage_task(name: str, gen: int | None, params: Params, root: Path, tracker: LoopTracker,
               dvc: bool) -> dict[str, float]:
    """One stage. With dvc: skip it when DVC says it is up to date, else run and record it."""
    stage = versioning.dvc_stage(name, gen)
    reuse = dvc and versioning.up_to_date(root, stage)
    metrics = run_stage(name, params, root, gen, tracker, reuse=reuse)
    if dvc and not reuse:
        versioning.commit(root, stage)
    return metrics


def _generation_markdown(lay: Layout, k: int) -> str:
    metrics = io.read_json(lay.metrics(k))
    samples = [r["text"] for r in io.read_rows(lay.samples(k))][:3]
    lines = [f"# Generation {k}", "", "| metric | value |", "|---|---|"]
    lines += [f"| {key} | {value:.4g} |" for key, value in metrics.items()]
    lines += ["", "## Samples", ""] + [f"> {s[:400]!s}".replace("\n", " ") + "\n" for s in samples]
    return "\n".join(lines)


@flow(name="loop", log_prints=True, persist_result=False)
def loop(params_file: str = "params.yaml", root: str = ".") -> str:
    """Run the self-consuming loop: gen 0 on real data, then generate/grade/mix/train/evaluate.

    Paths in params are relative to `root` (the project). When params_file is the
    project's params.yaml, DVC records every stage (dvc.lock) and skips current ones.
    """
    home = Path(root).resolve()
    path = (home / params_file).resolve()
    params = load_params(path)
    lay = Layout.of(params, home)
    dvc = versioning.tracks(home, path)
    tracker = LoopTracker(params, home, loop_id=f"prefect-{flow_run.id}", prefect_run_id=str(flow_run.id))
    stage_task("prepare", None, params, home, tracker, dvc)
    for k in range(params.loop.generations + 1):
        stages = ("mix", "train", "evaluate") if k == 0 else ("generate", "grade", "mix", "train", "evaluate")
        for name in stages:
            stage_task(name, k, params, home, tracker, dvc)
        create_markdown_artifact(_generation_markdown(lay, k), key=f"generation-{k}",
                                 description=f"metrics and samples of generation {k}")
    stage_task("report", None, params, home, tracker, dvc)
    rows = read_summary(lay.summary)
    create_table_artifact(rows, key="summary", description="per-generation summary")
    create_link_artifact(tracker.ui_url(), link_text="MLflow run", key="mlflow-run",
                         description=json.dumps({"run_id": tracker.parent_id, "tracking_uri": tracker.uri}))
    return tracker.parent_id


"""The one loop driver, for `synthloop run`, sweeps and the UI: stage tasks in table order.

Each stage is a Prefect task around `run_stage`, skipped when its resume record (DVC,
DVC's run-cache, or a ledger) says it is done. Along the way the flow run gets a
progress artifact (stages done, training steps inside a train stage), a markdown
artifact per generation, the summary table, the collapse plot inline and a link to
the MLflow run. No logic of the loop lives here: the order is the stage table's.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Protocol

from prefect import flow, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from synthloop import io, versioning
from synthloop.config import Params, load_params
from synthloop.layout import Layout
from synthloop.ledger import Ledger
from synthloop.progress import reporting
from synthloop.runner import run_stage
from synthloop.stages import table
from synthloop.stages.report import read_summary
from synthloop.tracking import LoopTracker

log = logging.getLogger("synthloop")


class Resume(Protocol):
    def done(self, name: str, gen: int | None) -> bool: ...
    def record(self, name: str, gen: int | None) -> None: ...


def resume_for(params: Params, root: Path, params_file: Path) -> Resume:
    """DVC when the run uses the project's own params.yaml and dvc.yaml; else the run's ledger."""
    return versioning.DvcResume(root) if versioning.tracks(root, params_file) else Ledger.of(params, root)


class Progress:
    """The run's progress artifact: the share of stages done, and the progress inside the running
    stage (training steps, samples, graders). Updates are throttled (each one is an API call)."""

    def __init__(self, stages: int):
        self.stages, self.done, self.label, self.last = stages, 0, "", 0.0
        self.id = create_progress_artifact(0.0, key="loop-progress", description="starting")

    def start(self, sid: str) -> None:
        self.label = sid
        self._update(self.done, f"{sid} ({self.done + 1}/{self.stages})", force=True)

    def finish(self) -> None:
        self.done += 1
        self._update(self.done, f"{self.done}/{self.stages} stages done", force=True)

    def within(self, desc: str, fraction: float) -> None:
        """Progress inside the running stage (synthloop.progress reports here while the stage runs)."""
        self._update(self.done + min(fraction, 1.0), f"{self.label}: {desc} {fraction:.0%}")

    def _update(self, stages_done: float, description: str, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last > 2.0:
            self.last = now
            update_progress_artifact(self.id, 100.0 * stages_done / self.stages, description=description)


@task(task_run_name="{sid}", cache_policy=NO_CACHE, persist_result=False)
def stage_task(
    sid: str,
    stage: table.Stage,
    gen: int | None,
    params: Params,
    root: Path,
    tracker: LoopTracker,
    resume: Resume,
    progress: Progress | None = None,
) -> dict[str, float]:
    """One stage: skipped when its resume record says it is done, else run and recorded."""
    outputs = table.files(Layout.of(params, root), stage, gen)[1]
    reuse = resume.done(stage.name, gen) and all(p.exists() for p in outputs)
    with contextlib.ExitStack() as scope:
        if progress:
            scope.enter_context(reporting(progress.within))
        metrics = run_stage(stage.name, params, root, gen, tracker, reuse=reuse)
    if not reuse:
        resume.record(stage.name, gen)
    return metrics


def generation_markdown(lay: Layout, k: int) -> str:
    metrics = io.read_json(lay.metrics(k))
    samples = [r["text"] for r in io.read_rows(lay.samples(k))][:3]
    lines = [f"# Generation {k}", "", "| metric | value |", "|---|---|"]
    lines += [f"| {key} | {value:.4g} |" for key, value in metrics.items()]
    if k >= 1:  # what writing its data took: tokens, their cost, whether the budget stopped it
        spent = io.read_json(lay.generate_stats(k))
        lines += [f"| generate.{key} | {value:.4g} |" for key, value in spent.items()]
    lines += ["", "## Samples", ""] + [f"> {s[:400]!s}".replace("\n", " ") + "\n" for s in samples]
    return "\n".join(lines)


def plot_markdown(lay: Layout) -> str:
    """The collapse plot inline (a data: URI: the Prefect UI needs no file server for it)."""
    png = base64.b64encode(lay.plot.read_bytes()).decode()
    return f"# Collapse plot\n\n![collapse plot](data:image/png;base64,{png})\n"


def mlflow_ui() -> str:
    """Where `synthloop ui` serves the MLflow UI (else `mlflow ui`'s default)."""
    return os.environ.get("SYNTHLOOP_MLFLOW_UI", "http://127.0.0.1:5000")


def run_loop(params: Params, root: Path, tracker: LoopTracker, resume: Resume) -> str:
    """Every stage of the loop as a task, in the stage table's order (inside a flow); the MLflow run id."""
    lay = Layout.of(params, root)
    steps = table.plan(params.loop.generations)
    progress = Progress(len(steps))
    last = table.GENERATION[-1].name
    for stage, gen in steps:
        sid = table.stage_id(stage.name, gen)
        progress.start(sid)
        stage_task(sid, stage, gen, params, root, tracker, resume, progress)
        progress.finish()
        if stage.name == last:
            create_markdown_artifact(
                generation_markdown(lay, gen),
                key=f"generation-{gen}",
                description=f"metrics and samples of generation {gen}",
            )
    create_table_artifact(read_summary(lay.summary), key="summary", description="per-generation summary")
    create_markdown_artifact(plot_markdown(lay), key="collapse-plot", description=str(lay.plot))
    create_link_artifact(
        tracker.ui_url(mlflow_ui()),
        link_text="MLflow run",
        key="mlflow-run",
        description=f"MLflow run {tracker.parent_id} ({tracker.uri})",
    )
    return tracker.parent_id


def run_until(params: Params, root: Path, tracker: LoopTracker, resume: Resume, last_gen: int) -> None:
    """The loop's stages up to and including generation `last_gen` (a sweep's shared generation 0)."""
    for stage, gen in table.plan(params.loop.generations):
        if gen is None and stage.name != table.TABLE[0].name or gen is not None and gen > last_gen:
            continue
        stage_task(table.stage_id(stage.name, gen), stage, gen, params, root, tracker, resume)


@flow(name="loop", log_prints=True, persist_result=False)
def loop(params_file: str = "params.yaml", root: str = ".") -> str:
    """Run the self-consuming loop: gen 0 on real data, then generate/grade/mix/train/evaluate.

    Paths in params are relative to `root` (the project). When params_file is the
    project's params.yaml, DVC records every stage (dvc.lock) and skips current ones;
    other params files resume from a ledger of finished stages in their gens folder.
    """
    home = Path(root).resolve()
    path = (home / params_file).resolve()
    params = load_params(path)
    tracker = LoopTracker(params, home, loop_id=f"prefect-{flow_run.id}", prefect_run_id=str(flow_run.id))
    return run_loop(params, home, tracker, resume_for(params, home, path))

"""Prefect only: thin tasks around run_stage, and the loop flow. No logic lives here."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import (create_link_artifact, create_markdown_artifact, create_progress_artifact,
                               create_table_artifact, update_progress_artifact)
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from . import compare, io, versioning
from . import sweep as sweeps
from .config import Params, load_params
from .layout import Layout
from .ledger import Ledger, params_key
from .runner import run_stage
from .stages.report import read_summary
from .tracking import LoopTracker, SweepTracker

log = logging.getLogger("synthloop")


@task(task_run_name="{name}[gen {gen}]", cache_policy=NO_CACHE, persist_result=False)
def stage_task(name: str, gen: int | None, params: Params, root: Path, tracker: LoopTracker,
               resume: versioning.DvcResume | Ledger) -> dict[str, float]:
    """One stage: skipped when DVC (or the run's ledger) says it is done, else run and recorded."""
    lay = Layout.of(params, root)
    outputs = {"generate": lay.synthetic(gen or 0), "train": lay.model(gen or 0),
               "report": lay.summary}.get(name) or lay.stats(name, gen or 0)
    reuse = resume.done(name, gen) and outputs.exists()
    metrics = run_stage(name, params, root, gen, tracker, reuse=reuse)
    if not reuse:
        resume.record(name, gen)
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
    project's params.yaml, DVC records every stage (dvc.lock) and skips current ones;
    other params files resume from a ledger of finished stages in their gens folder.
    """
    home = Path(root).resolve()
    path = (home / params_file).resolve()
    params = load_params(path)
    tracker = LoopTracker(params, home, loop_id=f"prefect-{flow_run.id}", prefect_run_id=str(flow_run.id))
    return run_loop(params, home, tracker, path)


def run_loop(params: Params, home: Path, tracker: LoopTracker, params_file: Path) -> str:
    """The loop's stages as Prefect tasks, in order (inside a flow)."""
    lay = Layout.of(params, home)
    resume = versioning.DvcResume(home) if versioning.tracks(home, params_file) else \
        Ledger(lay.gens / ".ledger.json", params_key(params))
    stage_task("prepare", None, params, home, tracker, resume)
    for k in range(params.loop.generations + 1):
        stages = ("mix", "train", "evaluate") if k == 0 else ("generate", "grade", "mix", "train", "evaluate")
        for name in stages:
            stage_task(name, k, params, home, tracker, resume)
        create_markdown_artifact(_generation_markdown(lay, k), key=f"generation-{k}",
                                 description=f"metrics and samples of generation {k}")
    stage_task("report", None, params, home, tracker, resume)
    rows = read_summary(lay.summary)
    create_table_artifact(rows, key="summary", description="per-generation summary")
    create_link_artifact(tracker.ui_url(), link_text="MLflow run", key="mlflow-run",
                         description=json.dumps({"run_id": tracker.parent_id, "tracking_uri": tracker.uri}))
    return tracker.parent_id



@flow(name="sweep-run", flow_run_name="{run_name}", log_prints=True, persist_result=False)
def sweep_run(params_file: str, root: str, run_name: str, sweep_run_id: str) -> str:
    """One loop of a sweep (a subflow): its MLflow run is a child of the sweep's run."""
    home = Path(root).resolve()
    path = (home / params_file).resolve()
    params = load_params(path)
    tracker = LoopTracker(params, home, loop_id=f"sweep-{run_name}-{params_key(params)[:8]}",
                          prefect_run_id=str(flow_run.id), parent_run_id=sweep_run_id, run_name=run_name)
    tracker.client.log_artifact(tracker.parent_id, str(path))  # the run's exact params: rerun it alone
    return run_loop(params, home, tracker, path)


@flow(name="sweep", log_prints=True, persist_result=False)
def sweep(spec_file: str = "sweeps/anchor.yaml", root: str = ".") -> str:
    """Run every (arm, seed) loop of a sweep file, then write summary.csv and report.md."""
    home = Path(root).resolve()
    return run_sweep(sweeps.load_spec(home / spec_file), home)


def run_sweep(spec: sweeps.SweepSpec, home: Path) -> str:
    runs = sweeps.plan(spec, home)
    folder = home / spec.out / spec.name
    tracker = SweepTracker(runs[0].params, home, spec, str(flow_run.id))
    progress = create_progress_artifact(0.0, description=f"sweep {spec.name}: runs finished")
    finished: list[sweeps.SweepRun] = []
    start, worked = time.perf_counter(), 0
    for i, run in enumerate(runs):
        sweeps.write_params(run)
        shared = sweeps.share_finished(run, finished, home)
        done_before = sweeps.ledger(run.params, home).done("report", None)
        elapsed = time.perf_counter() - start
        eta = f"ETA {_clock(elapsed / worked * (len(runs) - i))}" if worked else "ETA after the first run"
        log.info("sweep %s: run %d/%d %s%s; %s elapsed, %s", spec.name, i + 1, len(runs), run.name,
                 f" (shared: {', '.join(shared)})" if shared else "", _clock(elapsed), eta)
        sweep_run(os.path.relpath(run.params_file, home), str(home), f"{spec.name}/{run.name}", tracker.run_id)
        worked += not done_before
        finished.append(run)
        sweeps.write_summary(sweeps.summary_rows(spec, finished, home), folder / "summary.csv")
        update_progress_artifact(progress, 100.0 * (i + 1) / len(runs))
    report = compare.write_report(folder / "summary.csv", folder / "report", title=f"sweep {spec.name}", root=home)
    tracker.log_report(folder / "summary.csv", report)
    create_markdown_artifact(report.read_text(encoding="utf-8"), key=_key(f"sweep-{spec.name}-report"),
                             description=f"sweep {spec.name}: comparison report")
    log.info("sweep %s: %d runs in %s; report %s", spec.name, len(runs), _clock(time.perf_counter() - start), report)
    return tracker.run_id


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m{s:02d}s"


def _key(text: str) -> str:
    """Prefect artifact keys: lowercase letters, digits and dashes."""
    return "".join(c if c.isalnum() else "-" for c in text.lower())

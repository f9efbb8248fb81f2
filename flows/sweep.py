"""Sweeps through Prefect: one subflow per (arm, seed) loop, then the comparison report.

The work is synthloop.experiments.sweep's (plan, sharing, summary) and
synthloop.experiments.compare's (report); each loop runs through flows.loop.run_loop.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.runtime import flow_run

from synthloop import cluster as clusters
from synthloop import preflight
from synthloop.config import load_params
from synthloop.experiments import compare
from synthloop.experiments import sweep as sweeps
from synthloop.keys import params_hash
from synthloop.ledger import Ledger
from synthloop.tracking import LoopTracker, SweepTracker

from .loop import run_loop, run_until

log = logging.getLogger("synthloop")


def _tracker(params_file: str, home: Path, run_name: str, sweep_run_id: str) -> LoopTracker:
    """The MLflow run of one sweep loop: a child of the sweep's run, found again on a resume."""
    params = load_params((home / params_file).resolve())
    return LoopTracker(
        params,
        home,
        loop_id=f"sweep-{run_name}-{params_hash(params)[:8]}",
        prefect_run_id=str(flow_run.id) if flow_run.id else None,
        parent_run_id=sweep_run_id,
        run_name=run_name,
    )


@flow(name="sweep-run", flow_run_name="{run_name}", log_prints=True, persist_result=False)
def sweep_run(params_file: str, root: str, run_name: str, sweep_run_id: str) -> str:
    """One loop of a sweep (a subflow): its MLflow run is a child of the sweep's run."""
    home = Path(root).resolve()
    tracker = _tracker(params_file, home, run_name, sweep_run_id)
    params = tracker.params
    tracker.client.log_artifact(tracker.parent_id, str((home / params_file).resolve()))  # rerun it alone
    for key, value in clusters.worker_tags().items():  # which process ran it (a cluster worker, or this one)
        tracker.client.set_tag(tracker.parent_id, key, value)
    return run_loop(params, home, tracker, Ledger.of(params, home))


@flow(name="sweep", log_prints=True, persist_result=False)
def sweep(spec_file: str = "sweeps/anchor.yaml", root: str = ".", workers: int = 0, cluster: str = "") -> str:
    """Run every (arm, seed) loop of a sweep file, then write summary.csv and report.md.

    workers > 1 runs the loops on a local Dask cluster of that many worker processes; `cluster`
    (or SYNTHLOOP_CLUSTER) names a running Dask scheduler to run them on instead."""
    home = Path(root).resolve()
    return run_sweep(sweeps.load_spec(home / spec_file), home, clusters.engine_of(workers, cluster))


def run_sweep(spec: sweeps.SweepSpec, home: Path, engine: clusters.Engine | None = None) -> str:
    runs = sweeps.plan(spec, home)
    preflight.check_all([r.params for r in runs], home)  # the UI's sweeps too: one line before any loop
    tracker = SweepTracker(runs[0].params, home, spec, str(flow_run.id))
    if engine is None:
        _one_by_one(spec, runs, home, tracker)
    else:
        clusters.connect(engine, home)  # an existing cluster: reachable, with workers that see the project
        fixed = max(r.params.compute.threads for r in runs)
        if engine.local and fixed > clusters.worker_cpus(engine.workers):
            log.warning(
                "compute.threads %d on each of %d workers: more threads than the %d CPUs; results stay "
                "comparable to one process, but compute.threads: auto would not oversubscribe",
                fixed,
                engine.workers,
                clusters.available_cpus(),
            )
        log.info("sweep %s: %d runs on %s", spec.name, len(runs), engine.describe())
        on_cluster.with_options(task_runner=clusters.task_runner(engine))(spec.model_dump(), str(home), tracker.run_id)
    folder = home / spec.out / spec.name
    report = compare.write_report(
        folder / "summary.csv", folder / "report", title=f"sweep {spec.name}", root=home, pairs=list(spec.compare)
    )
    tracker.log_report(folder / "summary.csv", report)
    create_markdown_artifact(
        report.read_text(encoding="utf-8"),
        key=_key(f"sweep-{spec.name}-report"),
        description=f"sweep {spec.name}: comparison report",
    )
    log.info("sweep %s: %d runs; report %s", spec.name, len(runs), report)
    return tracker.run_id


def _one_by_one(spec: sweeps.SweepSpec, runs: list[sweeps.SweepRun], home: Path, tracker: SweepTracker) -> None:
    """Every loop in this process, in plan order; later runs share what earlier ones made."""
    folder = home / spec.out / spec.name
    progress = create_progress_artifact(0.0, description=f"sweep {spec.name}: runs finished")
    finished: list[sweeps.SweepRun] = []
    start, worked = time.perf_counter(), 0
    for i, run in enumerate(runs):
        sweeps.write_params(run)
        shared = sweeps.share_finished(run, finished, home)
        done_before = Ledger.of(run.params, home).done("report", None)
        elapsed = time.perf_counter() - start
        eta = f"ETA {_clock(elapsed / worked * (len(runs) - i))}" if worked else "ETA after the first run"
        log.info(
            "sweep %s: run %d/%d %s%s; %s elapsed, %s",
            spec.name,
            i + 1,
            len(runs),
            run.name,
            f" (shared: {', '.join(shared)})" if shared else "",
            _clock(elapsed),
            eta,
        )
        sweep_run(os.path.relpath(run.params_file, home), str(home), f"{spec.name}/{run.name}", tracker.run_id)
        worked += not done_before
        finished.append(run)
        sweeps.write_summary(sweeps.summary_rows(spec, finished, home), folder / "summary.csv")
        update_progress_artifact(progress, 100.0 * (i + 1) / len(runs))


@task(task_run_name="generation 0 for {data}", cache_policy=NO_CACHE, persist_result=False)
def warm(data: str, donors: list[list[str]], root: str, sweep_run_id: str) -> None:
    """On a worker: prepare a data folder once, then generation 0 of each run that others share.
    `donors`: [params file, run name] pairs."""
    home = Path(root)
    for params_file, run_name in donors:
        tracker = _tracker(params_file, home, run_name, sweep_run_id)
        run_until(tracker.params, home, tracker, Ledger.of(tracker.params, home), last_gen=0)


@task(task_run_name="{run_name}", cache_policy=NO_CACHE, persist_result=False)
def loop_task(params_file: str, root: str, run_name: str, sweep_run_id: str) -> dict[str, str]:
    """On a worker: one (arm, seed) loop as a subflow; returns the run's name and where it ran."""
    sweep_run(params_file, root, run_name, sweep_run_id)
    return {"run": run_name, **clusters.worker_tags()}


@flow(name="sweep-on-cluster", log_prints=True, persist_result=False)
def on_cluster(spec: dict, root: str, sweep_run_id: str) -> None:
    """The sweep's loops as tasks on the cluster: generation 0 of each sharing group first (one task
    per prepared data folder), then every loop at once; the summary grows as loops finish."""
    home = Path(root)
    s = sweeps.parse_spec(spec, "sweep")
    runs = sweeps.plan(s, home)
    for run in runs:
        sweeps.write_params(run)
    donors = sweeps.donors(runs)
    by_data: dict[str, list[list[str]]] = {}
    for d in donors:
        by_data.setdefault(d.params.paths.data, []).append([os.path.relpath(d.params_file, home), f"{s.name}/{d.name}"])
    warming = [warm.submit(data, pairs, root, sweep_run_id) for data, pairs in by_data.items()]
    for future in warming:
        future.result()
        _forget(future)
    for run in runs:
        shared = sweeps.share_finished(run, donors, home)
        if shared:
            log.info("sweep %s: %s shares %s", s.name, run.name, ", ".join(shared))
    progress = create_progress_artifact(0.0, description=f"sweep {s.name}: runs finished")
    folder = home / s.out / s.name
    futures = [
        loop_task.submit(os.path.relpath(r.params_file, home), root, f"{s.name}/{r.name}", sweep_run_id) for r in runs
    ]
    start, finished = time.perf_counter(), set()
    for future in as_completed(futures):
        done = future.result()
        _forget(future)
        finished.add(done["run"].split("/", 1)[1])
        log.info(
            "sweep %s: %d/%d runs finished (%s on %s pid %s); %s elapsed",
            s.name,
            len(finished),
            len(runs),
            done["run"],
            done["synthloop.worker.host"],
            done["synthloop.worker.pid"],
            _clock(time.perf_counter() - start),
        )
        # rows in plan order whatever order the loops finish in: the same file as one worker's
        rows = sweeps.summary_rows(s, [r for r in runs if r.name in finished], home)
        sweeps.write_summary(rows, folder / "summary.csv")
        update_progress_artifact(progress, 100.0 * len(finished) / len(runs))


def _forget(future) -> None:
    """Let the scheduler drop a finished task: were its worker to die later, Dask would run it again."""
    release = getattr(getattr(future, "wrapped_future", None), "release", None)
    if release:
        release()


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m{s:02d}s"


def _key(text: str) -> str:
    """Prefect artifact keys: lowercase letters, digits and dashes."""
    return "".join(c if c.isalnum() else "-" for c in text.lower())

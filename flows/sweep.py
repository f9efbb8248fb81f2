"""Sweeps through Prefect: one subflow per (arm, seed) loop, then the comparison report.

The work is synthloop.experiments.sweep's (plan, sharing, summary) and
synthloop.experiments.compare's (report); each loop runs through flows.loop.run_loop.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.runtime import flow_run

from synthloop import preflight
from synthloop.config import load_params
from synthloop.experiments import compare
from synthloop.experiments import sweep as sweeps
from synthloop.keys import params_hash
from synthloop.ledger import Ledger
from synthloop.tracking import LoopTracker, SweepTracker

from .loop import run_loop

log = logging.getLogger("synthloop")


@flow(name="sweep-run", flow_run_name="{run_name}", log_prints=True, persist_result=False)
def sweep_run(params_file: str, root: str, run_name: str, sweep_run_id: str) -> str:
    """One loop of a sweep (a subflow): its MLflow run is a child of the sweep's run."""
    home = Path(root).resolve()
    path = (home / params_file).resolve()
    params = load_params(path)
    tracker = LoopTracker(
        params,
        home,
        loop_id=f"sweep-{run_name}-{params_hash(params)[:8]}",
        prefect_run_id=str(flow_run.id),
        parent_run_id=sweep_run_id,
        run_name=run_name,
    )
    tracker.client.log_artifact(tracker.parent_id, str(path))  # the run's exact params: rerun it alone
    return run_loop(params, home, tracker, Ledger.of(params, home))


@flow(name="sweep", log_prints=True, persist_result=False)
def sweep(spec_file: str = "sweeps/anchor.yaml", root: str = ".") -> str:
    """Run every (arm, seed) loop of a sweep file, then write summary.csv and report.md."""
    home = Path(root).resolve()
    return run_sweep(sweeps.load_spec(home / spec_file), home)


def run_sweep(spec: sweeps.SweepSpec, home: Path) -> str:
    runs = sweeps.plan(spec, home)
    preflight.check_all([r.params for r in runs], home)  # the UI's sweeps too: one line before any loop
    folder = home / spec.out / spec.name
    tracker = SweepTracker(runs[0].params, home, spec, str(flow_run.id))
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
    report = compare.write_report(folder / "summary.csv", folder / "report", title=f"sweep {spec.name}", root=home)
    tracker.log_report(folder / "summary.csv", report)
    create_markdown_artifact(
        report.read_text(encoding="utf-8"),
        key=_key(f"sweep-{spec.name}-report"),
        description=f"sweep {spec.name}: comparison report",
    )
    log.info("sweep %s: %d runs in %s; report %s", spec.name, len(runs), _clock(time.perf_counter() - start), report)
    return tracker.run_id


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m{s:02d}s"


def _key(text: str) -> str:
    """Prefect artifact keys: lowercase letters, digits and dashes."""
    return "".join(c if c.isalnum() else "-" for c in text.lower())

"""MLflow glue: one parent run per loop, one child run per generation.

The parent carries every param (flat dotted keys), the per-generation metrics
(step = generation), the git commit and the report; each child carries its
generation's stage metrics, the DVC hashes of its data, samples, metrics JSON
and the model folder. Stages never import this module: the runner does.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from .config import Params, flatten
from .io import md5_file
from .keys import params_hash
from .layout import Layout
from .stages import table

TAG_LOOP = "synthloop.loop_id"
TAG_GEN = "synthloop.generation"
TAG_PREFECT = "prefect.flow_run_id"
TAG_WORKSPACE = "synthloop.workspace"

log = logging.getLogger("synthloop")


def tracking_uri(params: Params, root: Path) -> str:
    """MLFLOW_TRACKING_URI, else tracking.uri, else a sqlite store inside the project."""
    return (
        os.environ.get("MLFLOW_TRACKING_URI")
        or params.tracking.uri
        or f"sqlite:///{root.resolve() / '.mlflow' / 'mlflow.db'}"
    )


def experiment_id(client, params: Params, root: Path, uri: str) -> str:
    """The experiment of tracking.experiment, created (artifacts inside the project for sqlite) if new."""
    exp = client.get_experiment_by_name(params.tracking.experiment)
    if exp:
        return exp.experiment_id
    location = (root.resolve() / ".mlflow" / "artifacts").as_uri() if uri.startswith("sqlite:") else None
    return client.create_experiment(params.tracking.experiment, artifact_location=location)


def params_loop_id(params: Params) -> str:
    """The loop id of a DVC-run stage: the same params are the same loop."""
    return "params-" + params_hash(params)[:12]


def git_commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


class LoopTracker:
    """Finds or creates the loop's runs and logs one stage at a time."""

    def __init__(
        self,
        params: Params,
        root: Path,
        loop_id: str,
        prefect_run_id: str | None = None,
        parent_run_id: str | None = None,
        run_name: str | None = None,
    ):
        from mlflow.tracking import MlflowClient

        self.params, self.layout, self.loop_id = params, Layout.of(params, root), loop_id
        self.prefect_run_id, self.sweep_run_id, self.run_name = prefect_run_id, parent_run_id, run_name
        self.uri = tracking_uri(params, root)
        (root / ".mlflow").mkdir(exist_ok=True)
        self.client = MlflowClient(self.uri)
        self.experiment_id = experiment_id(self.client, params, root, self.uri)
        self.workspace = f"{root.resolve()}#{params_loop_id(params)}"  # these params in this folder
        interrupted = self._mark_interrupted()
        self.parent_id = self._find_or_create(None)
        if interrupted:
            self.client.set_tag(self.parent_id, "synthloop.resumed_from", ",".join(sorted(interrupted)))

    def _mark_interrupted(self) -> set[str]:
        """Runs of an earlier attempt at this loop still RUNNING were killed (SIGKILL runs no handler):
        mark them KILLED and return their loop runs, so the new run can say it resumed them."""
        query = f"tags.`{TAG_WORKSPACE}` = '{self.workspace}' and attributes.status = 'RUNNING'"
        stale = self.client.search_runs([self.experiment_id], query, max_results=1000)
        loops = set()
        for run in stale:
            self.client.set_terminated(run.info.run_id, "KILLED")
            loops.add(
                run.data.tags.get("mlflow.parentRunId", run.info.run_id)
                if run.data.tags.get(TAG_GEN) != "loop"
                else run.info.run_id
            )
        if stale:
            log.info("MLflow: marked %d run(s) of an interrupted attempt KILLED", len(stale))
        return loops

    def _find_or_create(self, gen: int | None) -> str:
        query = f"tags.`{TAG_LOOP}` = '{self.loop_id}'"
        query += f" and tags.`{TAG_GEN}` = '{gen}'" if gen is not None else f" and tags.`{TAG_GEN}` = 'loop'"
        found = self.client.search_runs([self.experiment_id], query, max_results=1)
        if found:
            return found[0].info.run_id
        tags = {TAG_LOOP: self.loop_id, TAG_GEN: "loop" if gen is None else str(gen), TAG_WORKSPACE: self.workspace}
        if self.prefect_run_id:
            tags[TAG_PREFECT] = self.prefect_run_id
        if gen is None:
            tags["git.commit"] = git_commit(self.layout.root)
            if self.sweep_run_id:
                tags["mlflow.parentRunId"] = self.sweep_run_id
            name = self.run_name or f"loop {self.params.mix.strategy} seed {self.params.loop.seed}"
        else:
            tags["mlflow.parentRunId"] = self.parent_id
            name = f"generation {gen}"
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=name)
        if gen is None:
            self._log_params(run.info.run_id)
        self.client.set_terminated(run.info.run_id, "FINISHED")
        return run.info.run_id

    def _log_params(self, run_id: str) -> None:
        from mlflow.entities import Param

        flat = {**flatten(self.params), "loop.generations": self.params.loop.generations}
        params = [Param(k, str(v)[:6000]) for k, v in sorted(flat.items())]
        for start in range(0, len(params), 100):
            self.client.log_batch(run_id, params=params[start : start + 100])

    @contextlib.contextmanager
    def stage(self, stage: table.Stage, gen: int | None) -> Iterator[StageLog]:
        run_id = self.parent_id if gen is None else self._find_or_create(gen)
        self.client.update_run(run_id, status="RUNNING")
        log = StageLog(self, run_id, stage, gen)
        try:
            yield log
        except BaseException:
            self.client.set_terminated(run_id, "KILLED" if _interrupted() else "FAILED")
            raise
        self.client.set_terminated(run_id, "FINISHED")

    def ui_url(self, base: str = "http://127.0.0.1:5000") -> str:
        """The parent run in the MLflow UI (`mlflow ui --backend-store-uri <uri>`)."""
        return f"{base}/#/experiments/{self.experiment_id}/runs/{self.parent_id}"


def _interrupted() -> bool:
    import sys

    return isinstance(sys.exc_info()[1], KeyboardInterrupt)


class StageLog:
    """What one stage logs: curves while it runs, results and artifacts at the end."""

    def __init__(self, tracker: LoopTracker, run_id: str, stage: table.Stage, gen: int | None):
        self.t, self.run_id, self.spec, self.stage, self.gen = tracker, run_id, stage, stage.name, gen

    def metric(self, key: str, value: float, step: int) -> None:
        self.t.client.log_metric(self.run_id, f"{self.stage}.{key}", value, step=step)

    def result(self, metrics: dict[str, float], seconds: float, reused: bool = False) -> None:
        from mlflow.entities import Metric

        if reused:
            self.t.client.set_tag(self.run_id, f"synthloop.{self.stage}.reused", "true")
        now = int(time.time() * 1000)
        values = {**metrics, "seconds": seconds}
        batch = [Metric(f"{self.stage}.{k}", float(v), now, 0) for k, v in values.items()]
        self.t.client.log_batch(self.run_id, metrics=batch)
        if self.spec.chart is not None and self.gen is not None:
            # the loop run charts e.g. each metric and each grader's audit (AUC, real keep-rate) over generations
            parent = [Metric(self.spec.chart + k, float(v), now, self.gen) for k, v in metrics.items()]  # step = gen
            self.t.client.log_batch(self.t.parent_id, metrics=parent)
        self._artifacts()

    def _artifacts(self) -> None:
        """What the stage table says MLflow keeps: DVC hashes as tags, files and folders as artifacts."""
        lay, client, rid = self.t.layout, self.t.client, self.run_id
        for name in self.spec.md5:
            client.set_tag(rid, f"dvc.{name}.md5", md5_file(table.path_of(lay, name, self.gen, None)))
        folder = self.stage if self.gen is None else None
        for name in self.spec.artifacts:
            path = table.path_of(lay, name, self.gen, None)
            if path.is_dir():
                client.log_artifacts(rid, str(path), name)
            elif path.exists():
                client.log_artifact(rid, str(path), folder)


class SweepTracker:
    """The sweep's own MLflow run: the spec, the comparison report; loop runs are its children."""

    def __init__(self, params: Params, root: Path, spec, prefect_run_id: str | None = None):
        from mlflow.tracking import MlflowClient

        self.uri = tracking_uri(params, root)
        (root / ".mlflow").mkdir(exist_ok=True)
        self.client = MlflowClient(self.uri)
        self.experiment_id = experiment_id(self.client, params, root, self.uri)
        found = self.client.search_runs(
            [self.experiment_id],
            f"tags.`synthloop.sweep` = '{spec.name}' and tags.`{TAG_GEN}` = 'sweep'",
            max_results=1,
        )
        if found:
            self.run_id = found[0].info.run_id
        else:
            tags = {"synthloop.sweep": spec.name, TAG_GEN: "sweep", "git.commit": git_commit(root)}
            if prefect_run_id:
                tags[TAG_PREFECT] = prefect_run_id
            self.run_id = self.client.create_run(
                self.experiment_id, tags=tags, run_name=f"sweep {spec.name}"
            ).info.run_id
            self.client.log_param(self.run_id, "sweep.spec", json.dumps(spec.model_dump(), sort_keys=True)[:6000])
            from .experiments.sweep import arm_seeds

            self.client.log_param(self.run_id, "sweep.runs", sum(len(arm_seeds(spec, a)) for a in spec.arms))
        self.client.update_run(self.run_id, status="RUNNING")

    def log_report(self, summary: Path, report: Path) -> None:
        self.client.log_artifact(self.run_id, str(summary), "report")
        self.client.log_artifacts(self.run_id, str(report.parent), "report")
        self.client.set_terminated(self.run_id, "FINISHED")

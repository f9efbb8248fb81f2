"""The deployments `synthloop ui` serves: `loop/default` and `sweep/default`, with typed forms.

The flows are built by factories so their parameter defaults come from the
project's params.yaml (or --params) at the time `synthloop ui` starts: Prefect
takes a form's defaults from the flow's signature. Served flows run in a fresh
process per flow run (Prefect pickles the flow object), so closures are fine.

A loop run from the UI goes through the same driver as `synthloop run`
(flows.loop.run_loop), in its own workspace (synthloop/workspace.py) with DVC's
run-cache; afterwards the workspace's dvc.lock becomes the run's DVC record.
"""

# no `from __future__ import annotations`: Prefect builds the forms from these annotations.
import argparse
import logging
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from prefect import Flow, flow
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from pydantic import Field

from synthloop import cluster as clusters
from synthloop import forms, preflight, versioning, workspace
from synthloop.config import Params, load_params
from synthloop.console import quiet_expected_errors
from synthloop.experiments import sweep as sweeps
from synthloop.stages import table
from synthloop.tracking import LoopTracker, experiment_id, git_commit, tracking_uri

from .loop import run_loop
from .sweep import run_sweep

log = logging.getLogger("synthloop")

F = forms.FORMS
TAG_URL = "prefect.flow_run_url"
TAG_DVC = "synthloop.dvc_workspace"


def workspace_tracker(ws: workspace.Workspace, run_id: str) -> LoopTracker:
    """MLflow for a workspace run: files from the workspace, runs in the *project's* store.

    The tracker is rooted at the workspace (its layout, and its `synthloop.workspace` tag,
    which must differ between concurrent runs: a tracker marks RUNNING runs of its own
    workspace KILLED), so the project's store is passed as MLFLOW_TRACKING_URI while it starts.
    """
    uri = tracking_uri(ws.params, ws.project)
    from mlflow.tracking import MlflowClient

    experiment_id(MlflowClient(uri), ws.params, ws.project, uri)  # artifacts under the project if new
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        tracker = LoopTracker(ws.params, ws.root, loop_id=f"prefect-{run_id}", prefect_run_id=run_id)
    finally:
        if old is None:
            os.environ.pop("MLFLOW_TRACKING_URI")
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old
    client, rid = tracker.client, tracker.parent_id
    client.set_tag(rid, "git.commit", git_commit(ws.project))
    client.set_tag(rid, TAG_DVC, str(ws.root))
    if flow_run.ui_url:
        client.set_tag(rid, TAG_URL, flow_run.ui_url)
    return tracker


def run_form(project: Path, values: dict[str, Any]) -> str:
    """A loop from the form's values, in the run's own workspace; returns the MLflow run id."""
    logging.getLogger("synthloop").setLevel(logging.INFO)  # stage logs in the UI (PREFECT_LOGGING_EXTRA_LOGGERS)
    quiet_expected_errors()  # this process runs the flow: its state message is the one line, no traceback
    params = forms.to_params(values)  # cross-field rules: ConfigError, one line, before any stage
    preflight.check(params, project)  # corpora, judge, disk: one line, before the workspace exists
    run_id = str(flow_run.id)
    ws = workspace.create(project, run_id, params)
    tracker = workspace_tracker(ws, run_id)
    resume = versioning.DvcResume(ws.root, run_cache=True)
    parent_id = run_loop(ws.params, ws.root, tracker, resume)
    _record(ws, tracker, resume)
    log.info(
        "done: workspace %s; %d of %d stages restored from DVC's run-cache",
        ws.root,
        len(resume.restored),
        len(table.plan(ws.params.loop.generations)),
    )
    return parent_id


def _record(ws: workspace.Workspace, tracker: LoopTracker, resume: versioning.DvcResume) -> None:
    """The run's DVC record (workspace dvc.lock): a Prefect artifact, and files on the MLflow run."""
    rows = versioning.lock_record(ws.lock)
    lines = [
        "# DVC record",
        "",
        f"Workspace `{ws.root}`: its `dvc.lock` holds every stage's params and data "
        f"hashes; `cd` there and run `dvc status` or `dvc repro`.",
        "",
        f"Restored from DVC's run-cache: {', '.join(resume.restored) or 'none'}.",
        "",
        "| stage | output | md5 |",
        "|---|---|---|",
    ]
    lines += [f"| {r['stage']} | {r['output']} | `{r['md5']}` |" for r in rows]
    create_markdown_artifact("\n".join(lines), key="dvc-record", description=str(ws.lock))
    for path in (ws.lock, ws.params_file):
        tracker.client.log_artifact(tracker.parent_id, str(path), "dvc")


def loop_flow(project: Path, defaults: Params) -> Flow:
    """The `loop` flow with one typed parameter per params.yaml section (defaults: `defaults`)."""
    d = forms.to_form(defaults)

    def loop(
        paths: F["paths"] = d["paths"],
        data: F["data"] = d["data"],
        tokenizer: F["tokenizer"] = d["tokenizer"],
        model: F["model"] = d["model"],
        compute: F["compute"] = d["compute"],
        loop: F["loop"] = d["loop"],
        generate: F["generate"] = d["generate"],
        grade: F["grade"] = d["grade"],
        mix: F["mix"] = d["mix"],
        train: F["train"] = d["train"],
        evaluate: F["evaluate"] = d["evaluate"],
        tracking: F["tracking"] = d["tracking"],
    ) -> str:
        """The self-consuming loop, in its own workspace: generation 0 on real text, then generate, grade,
        mix, train and evaluate per generation. Data is versioned by DVC (run-cache shared with the project).

        Args:
            paths: Output folders inside the run's workspace.
            data: The real corpus (paths relative to the project root).
            tokenizer: BPE tokenizer trained on the real training split.
            model: The causal LM trained each generation.
            compute: Device and CPU threads.
            loop: Seed and number of generations.
            generate: Sampling synthetic text from the previous generation's model.
            grade: Graders that keep or drop synthetic samples.
            mix: How real and synthetic documents form each training set.
            train: Optimizer and steps per generation.
            evaluate: Held-out metrics and fresh samples per generation.
            tracking: MLflow experiment (empty uri: the project's store).
        """
        return run_form(
            project,
            dict(
                paths=paths,
                data=data,
                tokenizer=tokenizer,
                model=model,
                compute=compute,
                loop=loop,
                generate=generate,
                grade=grade,
                mix=mix,
                train=train,
                evaluate=evaluate,
                tracking=tracking,
            ),
        )

    return flow(loop, name="loop", log_prints=True, persist_result=False, validate_parameters=True)


def profiles(project: Path) -> list[str]:
    """Params files a sweep can start from: params.yaml and profiles/*.yaml, relative to the project."""
    found = ["params.yaml"] if (project / "params.yaml").is_file() else []
    return found + sorted(str(p.relative_to(project)) for p in (project / "profiles").glob("*.yaml"))


def sweep_flow(project: Path) -> Flow:
    """The `sweep` flow: strategies x seeds on one profile (synthloop/experiments/sweep.py does the work)."""
    choices = profiles(project) or ["params.yaml"]
    Profile = Literal[tuple(choices)]  # a dropdown of the project's params files
    default_profile = "profiles/tiny.yaml" if "profiles/tiny.yaml" in choices else choices[0]

    def sweep(
        strategies: list[forms.Strategy] = ["replace", "accumulate"],  # noqa: B006 (Prefect copies defaults)
        seeds: list[Annotated[int, Field(ge=0)]] = [0],  # noqa: B006
        generations: Annotated[int, Field(ge=1, le=100)] = 2,
        profile: Profile = default_profile,
        name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.=-]*$")] = "",
        workers: Annotated[int, Field(ge=1, le=64)] = 1,
    ) -> str:
        """Compare mix strategies: one loop per (strategy, seed) on a profile, then summary.csv and report.md.

        Args:
            strategies: mix.strategy of each arm.
            seeds: loop.seed of each replica.
            generations: Generations after generation 0 (sets loop.chain).
            profile: The params file every arm starts from.
            name: The sweep's name (empty: the flow run's name); results go to .synthloop/runs/<flow-run-id>/<name>/.
            workers: Loops side by side on a local Dask cluster of this many worker processes (1: one
                after another; SYNTHLOOP_CLUSTER where the UI runs names a running cluster instead).
        """
        quiet_expected_errors()  # the flow run's own process: a one-line failure, no traceback
        run_id = str(flow_run.id)
        raw = forms.sweep_raw(
            list(strategies), list(seeds), generations, profile, name or flow_run.name, out=str(workspace.RUNS / run_id)
        )
        engine = clusters.engine_of(workers, None)
        return run_sweep(sweeps.parse_spec(raw, "sweep form"), project, engine)

    return flow(sweep, name="sweep", log_prints=True, persist_result=False, validate_parameters=True)


def serve(project: Path, params_file: Path, loop_concurrency: int | None = None) -> None:
    """Serve loop/default and sweep/default until interrupted (SIGINT pauses both deployments).

    Runner.add_flow (not prefect.serve of deployments) keeps the flow objects, so each run
    executes the flow built here rather than re-importing an entrypoint (a closure has none).
    `loop_concurrency`: at most that many loop/default runs at once (the deployment's
    concurrency limit, kept by the Prefect server: the others wait in AwaitingConcurrencySlot);
    None: no limit of its own (the runner still runs at most PREFECT_RUNNER_PROCESS_LIMIT,
    default 5, flow runs at once).
    """
    import asyncio

    from prefect.runner import Runner

    project = project.resolve()
    runner = Runner(name="synthloop-ui", pause_on_shutdown=True)
    runner.add_flow(
        loop_flow(project, load_params(params_file)),
        name="default",
        tags=["synthloop"],
        description=f"The loop in its own workspace; form defaults from {params_file}.",
        concurrency_limit=loop_concurrency,
    )
    runner.add_flow(
        sweep_flow(project), name="default", tags=["synthloop"], description="Mix strategies x seeds on one profile."
    )
    try:
        asyncio.run(runner.start())
    except KeyboardInterrupt:
        log.info("deployments: stopped")


def main(argv: list[str] | None = None) -> None:
    """`python -P -c 'from flows.deployments import main; main()' --root R --params P` (synthloop ui)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--params", type=Path, required=True)
    parser.add_argument("--loop-concurrency", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    serve(args.root, args.params, args.loop_concurrency)

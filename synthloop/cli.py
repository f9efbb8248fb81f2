"""The `synthloop` command: run the loop through Prefect, or one stage (what dvc.yaml calls)."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from .console import guard as _guard
from .console import print_summary, quiet_expected_errors, quiet_offline_env

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="synthloop: the self-consuming training loop, run and measured.",
)

ParamsOpt = Annotated[
    Path,
    typer.Option(
        "--params", "-p", help="params file; paths in it are relative to the current folder (the project root)."
    ),
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")]


@app.command()
def run(
    params: ParamsOpt = Path("params.yaml"),
    workers: Annotated[
        int,
        typer.Option("--workers", "-w", help="Sample each generation's batches on a local Dask cluster of N workers."),
    ] = 1,
    debug: DebugOpt = False,
) -> None:
    """Run the whole loop as a Prefect flow (ephemeral, or the server at PREFECT_API_URL)."""
    root = Path.cwd()
    quiet_offline_env(root)

    def _run() -> None:
        from .config import load_params
        from .layout import Layout

        p = load_params(params)  # fail on bad params, data or machine before Prefect starts
        from .preflight import check

        check(p, root)
        from flows.loop import loop

        if not debug:
            quiet_expected_errors()

        from . import cluster

        if workers < 1:
            from .config import ConfigError

            raise ConfigError(f"--workers {workers}: give a number of worker processes >= 1")
        with cluster.local_pool(workers) if workers > 1 else contextlib.nullcontext():
            run_id = loop(str(params.resolve()), root=str(root))
        lay = Layout.of(p, root)
        print_summary(lay.summary)
        typer.echo(f"\nreport:   {lay.summary}\n          {lay.plot}")
        typer.echo(
            f"MLflow:   run {run_id}; browse with\n          .venv/bin/mlflow ui --backend-store-uri "
            f"sqlite:///{root / '.mlflow' / 'mlflow.db'}  (http://127.0.0.1:5000)"
        )
        typer.echo(
            "Prefect:  .venv/bin/prefect server start --host 127.0.0.1  (http://127.0.0.1:4200), "
            "then run with PREFECT_API_URL=http://127.0.0.1:4200/api to see the flow there"
        )

    _guard(debug, _run)


@app.command()
def stage(
    name: Annotated[str, typer.Argument(help="prepare, generate, grade, mix, train, evaluate or report")],
    gen: Annotated[int | None, typer.Option("--gen", "-g", help="Generation (per-generation stages).")] = None,
    params: ParamsOpt = Path("params.yaml"),
    debug: DebugOpt = False,
) -> None:
    """Run one stage (the command dvc.yaml uses). Logs to the MLflow run of these params."""
    root = Path.cwd()
    quiet_offline_env(root)

    def _stage() -> None:
        from .config import load_params
        from .stages.table import check

        p = load_params(params)
        check(name, gen, p.loop.generations)
        if name == "prepare":  # the corpus, before MLflow and torch load (seconds under `dvc repro`)
            from .preflight import corpora

            corpora(p, root)
        from .runner import run_stage
        from .tracking import LoopTracker, params_loop_id

        loop_id = os.environ.get("SYNTHLOOP_LOOP_ID") or params_loop_id(p)
        run_stage(name, p, root, gen, LoopTracker(p, root, loop_id))

    _guard(debug, _stage)


@app.command()
def show(params: ParamsOpt = Path("params.yaml"), debug: DebugOpt = False) -> None:
    """Print reports/summary.csv as a table."""
    root = Path.cwd()

    def _show() -> None:
        from .config import load_params
        from .io import DataError
        from .layout import Layout

        lay = Layout.of(load_params(params), root)
        if not lay.summary.is_file():
            raise DataError(f"{lay.summary}: no summary yet; run `synthloop run` or `dvc repro` first")
        print_summary(lay.summary)

    _guard(debug, _show)


def _values(text: str) -> list:
    """'replace,accumulate' or '0.5,1' -> typed YAML scalars."""
    import yaml

    return [yaml.safe_load(v) for v in text.split(",") if v.strip()]


@app.command()
def sweep(
    spec: Annotated[Path | None, typer.Argument(help="Sweep file (see sweeps/anchor.yaml); or use --grid.")] = None,
    grid: Annotated[
        list[str] | None,
        typer.Option(
            "--grid", "-g", help="KEY=V1,V2: one axis of a grid, e.g. mix.strategy=replace,accumulate (repeatable)."
        ),
    ] = None,
    seeds: Annotated[str, typer.Option("--seeds", help="With --grid: comma-separated loop seeds.")] = "0",
    name: Annotated[
        str, typer.Option("--name", help="With --grid: the sweep's name (its folder under sweeps/).")
    ] = "grid",
    params: ParamsOpt = Path("params.yaml"),
    workers: Annotated[
        int,
        typer.Option("--workers", "-w", help="Run loops side by side on a local Dask cluster of N worker processes."),
    ] = 1,
    cluster: Annotated[
        str | None,
        typer.Option(
            "--cluster", help="Run loops on a running Dask scheduler, e.g. tcp://10.0.0.5:8786 (or SYNTHLOOP_CLUSTER)."
        ),
    ] = None,
    debug: DebugOpt = False,
) -> None:
    """Run many loops (arms x seeds) and compare them: sweeps/NAME/summary.csv and report/report.md."""
    root = Path.cwd()
    quiet_offline_env(root)

    def _sweep() -> None:
        from .config import ConfigError
        from .experiments import sweep as sweeps

        if spec is not None and grid:
            raise ConfigError("give a sweep file or --grid, not both")
        if spec is not None:
            s = sweeps.load_spec(spec)
        else:
            if not grid:
                raise ConfigError("nothing to sweep: give a sweep file (e.g. sweeps/anchor.yaml) or --grid KEY=V1,V2")
            axes = {}
            for item in grid:
                key, eq, values = item.partition("=")
                if not eq or not _values(values):
                    raise ConfigError(f"--grid {item!r}: write KEY=V1,V2, e.g. mix.strategy=replace,accumulate")
                axes[key.strip()] = _values(values)
            s = sweeps.grid_spec(name, str(params), axes, [int(v) for v in _values(seeds)])
        from . import cluster as clusters

        engine = clusters.engine_of(workers, cluster)
        runs = sweeps.plan(s, root)  # every run's params validated before anything starts
        from .preflight import check_all

        check_all([r.params for r in runs], root)
        folder = root / s.out / s.name
        spec_file = spec
        if spec_file is None:  # the grid's spec is kept with its results, so it can be rerun
            import yaml

            from .io import write_text

            spec_file = folder / "sweep.yaml"
            write_text(spec_file, yaml.safe_dump(s.model_dump(), sort_keys=False))
        where = f" on {engine.describe()}" if engine else ""
        per_arm = f"{len(s.seeds)} seeds" if len(runs) == len(s.arms) * len(s.seeds) else "their seeds"
        typer.echo(f"sweep {s.name}: {len(s.arms)} arms x {per_arm} = {len(runs)} loops{where}")
        if engine:
            clusters.connect(engine, root)  # before Prefect starts: an unreachable cluster is one line
        from flows.sweep import sweep as sweep_flow

        if not debug:
            quiet_expected_errors()
        with clusters.prefect_api() if engine else contextlib.nullcontext():
            where = (engine.workers, engine.address) if engine else (0, "")
            sweep_flow(str(spec_file.resolve()), str(root), *where)
        typer.echo(f"\nsummary:  {folder / 'summary.csv'}\nreport:   {folder / 'report' / 'report.md'}")

    _guard(debug, _sweep)


@app.command()
def report(
    summary: Annotated[Path, typer.Argument(help="A summary.csv from a sweep (or a loop's reports/summary.csv).")],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Folder for report.md and plots (default: report/ beside the summary)."),
    ] = None,
    title: Annotated[str, typer.Option("--title", help="Report title.")] = "synthloop report",
    pair: Annotated[
        list[str] | None,
        typer.Option(
            "--pair",
            help="A:B, repeatable: test arm A against arm B, paired by seed (default: every arm against the first).",
        ),
    ] = None,
    debug: DebugOpt = False,
) -> None:
    """Turn a summary.csv into report.md + plots (one line per arm, a band over seeds)."""

    def _report() -> None:
        from .experiments.compare import write_report
        from .io import DataError

        pairs = []
        for text in pair or []:
            a, sep, b = text.partition(":")
            if not (sep and a and b):
                raise DataError(f"--pair {text}: write it as ARM_A:ARM_B (e.g. --pair accumulate:replace)")
            pairs.append((a, b))
        path = write_report(summary, out or summary.parent / "report", title=title, root=Path.cwd(), pairs=pairs)
        typer.echo(f"report: {path}")

    _guard(debug, _report)


@app.command("dvc-yaml")
def dvc_yaml(
    check: Annotated[
        bool, typer.Option("--check", help="Only check: exit 1 when dvc.yaml is not what the stage table gives.")
    ] = False,
    debug: DebugOpt = False,
) -> None:
    """Write dvc.yaml from the stage table (synthloop/stages/table.py)."""

    def _write() -> None:
        from .io import DataError, write_text
        from .versioning import dvc_yaml as text

        path = Path.cwd() / "dvc.yaml"
        if not check:
            write_text(path, text())
            typer.echo(f"wrote {path}")
        elif not path.is_file() or path.read_text(encoding="utf-8") != text():
            raise DataError(f"{path}: out of date with the stage table; run `synthloop dvc-yaml`")

    _guard(debug, _write)


@app.command()
def ui(
    prefect_port: Annotated[int, typer.Option("--prefect-port", help="Port of the Prefect server and UI.")] = 4200,
    mlflow_port: Annotated[int, typer.Option("--mlflow-port", help="Port of the MLflow UI.")] = 5000,
    params: Annotated[Path, typer.Option("--params", "-p", help="The loop form's defaults.")] = Path("params.yaml"),
    loop_concurrency: Annotated[
        int | None,
        typer.Option(
            "--loop-concurrency",
            envvar="SYNTHLOOP_LOOP_CONCURRENCY",
            help="At most N loop/default runs at once (the others wait in the queue); default: no limit of its own "
            "(the runner runs at most 5 flow runs at once).",
        ),
    ] = None,
    debug: DebugOpt = False,
) -> None:
    """Start the Prefect UI (deployments loop/default, sweep/default) and the MLflow UI on 127.0.0.1.

    Ctrl-C stops both."""
    root = Path.cwd()
    quiet_offline_env(root)

    def _ui() -> None:
        from .ui import UiError, run_ui

        try:
            run_ui(root, params, prefect_port, mlflow_port, echo=typer.echo, loop_concurrency=loop_concurrency)
        except UiError as exc:
            if debug:
                raise
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None

    _guard(debug, _ui)


@app.command()
def serve(
    model: Annotated[Path, typer.Argument(help="A .gguf model file, e.g. models/SmolLM2-135M-Instruct.Q4_1.gguf.")],
    alias: Annotated[str, typer.Option("--alias", help="The model name clients send (generate.model).")] = "smollm2",
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1.")] = 8080,
    threads: Annotated[
        int, typer.Option("--threads", help="llama.cpp threads (0 = every CPU this process may use).")
    ] = 0,
    n_ctx: Annotated[int, typer.Option("--n-ctx", help="Context length the server allocates.")] = 2048,
    debug: DebugOpt = False,
) -> None:
    """Serve a GGUF model through llama.cpp's OpenAI-compatible server on 127.0.0.1 (Ctrl-C stops it).

    Then generate with backend: http, base_url: http://127.0.0.1:PORT, model: ALIAS
    (or judge with grade.judge_backend: http)."""
    root = Path.cwd()

    def _serve() -> None:
        import signal
        import threading

        from .backends.serve import LlamaServer

        done = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: done.set())
        server = LlamaServer(model, alias, port, root, threads, n_ctx)
        typer.echo(f"starting llama.cpp's server for {model} (log: .synthloop/logs/llama-server.log) ...")
        server.start()
        try:
            typer.echo(
                f"serving {model.name} as '{alias}' at {server.url}/v1 ({server.n_threads} threads); Ctrl-C stops it"
            )
            typer.echo(f"params:  generate.backend: http, generate.base_url: {server.url}, generate.model: {alias}")
            while not done.wait(1.0) and server.child and server.child.alive():
                pass
            if server.child and not server.child.alive():
                raise typer.Exit(1)
        finally:
            typer.echo(f"stopped {server.stop() or 'llama-server (it had exited; see its log)'}")

    _guard(debug, _serve)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())

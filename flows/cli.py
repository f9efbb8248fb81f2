"""The `synthloop` command: run the loop through Prefect, or one stage (what dvc.yaml calls)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="synthloop: the self-consuming training loop, run and measured.")

ParamsOpt = Annotated[Path, typer.Option("--params", "-p", help="params file; paths in it are relative to the current folder (the project root).")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")]


def quiet_offline_env(root: Path) -> None:
    """Keep Prefect, MLflow, HF and DVC offline and writing inside the project (STACK-NOTES)."""
    defaults = {
        "PREFECT_HOME": str(root / ".prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1", "PREFECT_LOGGING_EXTRA_LOGGERS": "synthloop",
        "MLFLOW_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(root / ".hf"), "DVC_NO_ANALYTICS": "1", "TOKENIZERS_PARALLELISM": "false",
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        # a fresh Prefect database takes 15-30 s to migrate on a busy 2-core machine (default limit: 20 s)
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)


def _guard(debug: bool, fn, *args):
    from .config import ConfigError
    from .io import DataError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "alembic", "mlflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("dvc").propagate = False  # DVC prints its own lines
    try:
        return fn(*args)
    except (ConfigError, DataError) as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2 if isinstance(exc, ConfigError) else 1) from None


def print_summary(path: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    cols = {"generation": "gen", "test_ppl": "test_ppl", "test_ce": "test_ce", "distinct_1": "dist_1",
            "distinct_2": "dist_2", "unigram_kl": "uni_kl", "synthetic_share": "synth_share",
            "n_train": "n_train", "n_generated": "n_gen", "n_kept": "n_kept"}
    from .stages.report import read_summary

    rows = read_summary(path)
    table = Table(title=f"synthloop summary ({path})")
    for header in cols.values():
        table.add_column(header, justify="right")
    for r in rows:
        table.add_row(*[_fmt(r[c]) for c in cols])
    Console(width=max(110, Console().width)).print(table)


def _fmt(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    return str(int(number)) if number.is_integer() else f"{number:.4g}"


@app.command()
def run(params: ParamsOpt = Path("params.yaml"), debug: DebugOpt = False) -> None:
    """Run the whole loop as a Prefect flow (ephemeral, or the server at PREFECT_API_URL)."""
    root = Path.cwd()
    quiet_offline_env(root)

    def _run() -> None:
        from .config import load_params
        from .layout import Layout

        p = load_params(params)  # fail on bad params before Prefect starts
        from .pipeline import loop

        run_id = loop(str(params.resolve()), root=str(root))
        lay = Layout.of(p, root)
        print_summary(lay.summary)
        typer.echo(f"\nreport:   {lay.summary}\n          {lay.plot}")
        typer.echo(f"MLflow:   run {run_id}; browse with\n          .venv/bin/mlflow ui --backend-store-uri "
                   f"sqlite:///{root / '.mlflow' / 'mlflow.db'}  (http://127.0.0.1:5000)")
        typer.echo("Prefect:  .venv/bin/prefect server start --host 127.0.0.1  (http://127.0.0.1:4200), "
                   "then run with PREFECT_API_URL=http://127.0.0.1:4200/api to see the flow there")

    _guard(debug, _run)


@app.command()
def stage(name: Annotated[str, typer.Argument(help="prepare, generate, grade, mix, train, evaluate or report")],
          gen: Annotated[Optional[int], typer.Option("--gen", "-g", help="Generation (per-generation stages).")] = None,
          params: ParamsOpt = Path("params.yaml"), debug: DebugOpt = False) -> None:
    """Run one stage (the command dvc.yaml uses). Logs to the MLflow run of these params."""
    root = Path.cwd()
    quiet_offline_env(root)

    def _stage() -> None:
        from .config import load_params
        from .runner import check_stage, run_stage
        from .tracking import LoopTracker, params_loop_id

        p = load_params(params)
        check_stage(name, gen, p)
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


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())

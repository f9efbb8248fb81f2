"""What the terminal shows: the environment that keeps tools quiet, one-line errors, the summary table."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import typer


def quiet_offline_env(root: Path) -> None:
    """Keep Prefect, MLflow, HF and DVC offline and writing inside the project (STACK-NOTES)."""
    defaults = {
        "PREFECT_HOME": str(root / ".prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_LOGGING_EXTRA_LOGGERS": "synthloop",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_LOGGING_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(root / ".hf"),
        "DVC_NO_ANALYTICS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # transformers' own load/save bars: noise in logs
        # OpenMP threads sleep instead of spinning at barriers: with another CPU-bound process on the
        # cores, spinning made sampling 6.2x slower (bench/busy.py); OMP_WAIT_POLICY=ACTIVE for a
        # dedicated machine (idle sampling ~1.7x faster, training the same)
        "OMP_WAIT_POLICY": "PASSIVE",
        "TRANSFORMERS_VERBOSITY": "error",
        # a fresh Prefect database takes 15-30 s to migrate on a busy 2-core machine (default limit: 20 s)
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        # a local Dask cluster's scratch space inside the project, and its chatter at warning level
        "DASK_TEMPORARY_DIRECTORY": str(root / ".dask"),
        "DASK_LOGGING__DISTRIBUTED": "warning",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)


class ExpectedErrors(logging.Filter):
    """Drops Prefect's report of an expected error (a ConfigError or DataError inside a task or flow):
    its traceback and its "Finished in state Failed(...)" line. The CLI says it in one line, and the
    failed run's state message in the UI is that line. Unexpected exceptions keep their traceback."""

    NAMES = ("DataError", "ConfigError")

    def filter(self, record: logging.LogRecord) -> bool:
        from .config import ConfigError
        from .io import DataError

        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            return not isinstance(exc, (ConfigError, DataError))
        message = record.getMessage()
        failed = message.startswith(("Finished in state Failed", "Encountered exception"))
        return not (failed and any(name in message for name in self.NAMES))


def quiet_expected_errors() -> None:
    """Install ExpectedErrors on Prefect's run loggers (call after Prefect configured its logging)."""
    for name in ("prefect.task_runs", "prefect.flow_runs"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, ExpectedErrors) for f in logger.filters):
            logger.addFilter(ExpectedErrors())


def guard(debug: bool, fn, *args):
    """Run fn(*args); a user error (params, data, the machine) becomes one line and exit 2 or 1."""
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
    except OSError as exc:  # the machine, not the code: disk full, read-only folder, file-size limit
        if debug or exc.errno not in _OS_ADVICE:
            raise
        typer.echo(f"error: {exc.filename or 'a file'}: {exc.strerror}; {_OS_ADVICE[exc.errno]}", err=True)
        raise typer.Exit(1) from None


_FREE = "free space (or raise the limit) and rerun the same command: finished stages are kept"
_WRITABLE = "make the project folder writable and rerun the same command"
_OS_ADVICE = {
    errno.ENOSPC: _FREE,
    errno.EDQUOT: _FREE,
    errno.EFBIG: _FREE,
    errno.EROFS: _WRITABLE,
    errno.EACCES: _WRITABLE,
    errno.EPERM: _WRITABLE,
}


def print_summary(path: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    cols = {
        "generation": "gen",
        "test_ppl": "test_ppl",
        "test_ce": "test_ce",
        "test_bpb": "bpb",
        "distinct_1": "dist_1",
        "distinct_2": "dist_2",
        "unigram_kl": "uni_kl",
        "synthetic_share": "synth_share",
        "n_train": "n_train",
        "n_generated": "n_gen",
        "n_kept": "n_kept",
    }
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

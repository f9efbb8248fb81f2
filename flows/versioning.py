"""DVC glue for the Prefect path: skip stages DVC says are up to date, record the rest.

`dvc repro` runs `synthloop stage ...` as subprocesses; the Prefect flow runs
the same stages in-process (no re-import of torch per stage) and then records
them with `dvc commit`, so both paths leave the same dvc.lock and cache.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from .io import DataError

log = logging.getLogger("synthloop")


def dvc_stage(name: str, gen: int | None) -> str:
    """The stage's name in dvc.yaml: prepare, mix0 (generation 0), mix@3, report."""
    if gen is None:
        return name
    return f"{name}0" if gen == 0 else f"{name}@{gen}"


def tracks(root: Path, params_file: Path) -> bool:
    """DVC records a run only when it uses the project's own params.yaml and dvc.yaml."""
    return (root / ".dvc").is_dir() and (root / "dvc.yaml").is_file() \
        and params_file.resolve() == (root / "params.yaml").resolve()


@contextlib.contextmanager
def _repo(root: Path) -> Iterator:
    from dvc.lock import LockError
    from dvc.repo import Repo

    try:
        with Repo(str(root)) as repo:
            yield repo
    except LockError as exc:
        raise DataError(f"{root / '.dvc'}: DVC is busy ({str(exc).splitlines()[0]}); wait for the other "
                        "dvc process to finish, then rerun the same command") from None


def up_to_date(root: Path, stage: str) -> bool:
    with _repo(root) as repo:
        return not repo.status(targets=[stage])


def commit(root: Path, stage: str) -> None:
    with _repo(root) as repo:
        repo.commit(stage, force=True)
    log.info("dvc: recorded %s in dvc.lock", stage)


class DvcResume:
    """Resume through DVC: a stage is done when `dvc status` says it is current."""

    def __init__(self, root: Path):
        self.root = root

    def done(self, name: str, gen: int | None) -> bool:
        return up_to_date(self.root, dvc_stage(name, gen))

    def record(self, name: str, gen: int | None) -> None:
        commit(self.root, dvc_stage(name, gen))

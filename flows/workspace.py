"""One folder per UI run: its own params.yaml and DVC repo, sharing the project's DVC cache.

DVC locks a workspace for the length of a command and is no queue: two runs in
one folder would block or overwrite each other. So every run started from the
Prefect UI gets `<project>/.synthloop/runs/<flow-run-id>/` with

- params.yaml: the form's values (relative corpus paths made absolute, since
  they were relative to the project root);
- dvc.yaml and .dvcignore copied from the project, and a snapshot of the
  `flows/` sources that dvc.yaml lists as code dependencies;
- .dvc/config: a DVC repo without git (`core.no_scm`) whose `cache.dir` is the
  project's cache, so data and DVC's run-cache are shared between runs and with
  `dvc repro` in the project.

A stage DVC already ran with the same command, dependencies and params (in any
workspace or the project) is restored from the run-cache instead of recomputed;
every stage is committed (`dvc commit`, which also saves its run-cache entry),
so the workspace's dvc.lock is the run's DVC record: params and data hashes, and
`dvc status` / `dvc repro` work inside the folder.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import io, versioning
from .config import Params, parse_params

log = logging.getLogger("synthloop")

RUNS = Path(".synthloop") / "runs"


@dataclass(frozen=True)
class Workspace:
    project: Path
    root: Path
    params: Params

    @property
    def params_file(self) -> Path:
        return self.root / "params.yaml"

    @property
    def lock(self) -> Path:
        return self.root / "dvc.lock"


def folder(project: Path, run_id: str) -> Path:
    return project.resolve() / RUNS / run_id


def _absolute(path: str | None, project: Path) -> str | None:
    """A params path relative to the project root, as an absolute path (None and absolute stay)."""
    if not path:
        return path
    return str(Path(path) if Path(path).is_absolute() else (project / path).resolve())


def workspace_raw(params: Params, project: Path) -> dict[str, Any]:
    """The params.yaml of a workspace: input paths made absolute; outputs stay relative (inside it)."""
    raw = params.model_dump()
    raw["data"]["corpus"] = _absolute(raw["data"]["corpus"], project)
    raw["data"]["test_corpus"] = _absolute(raw["data"]["test_corpus"], project)
    return raw


def _cache_dir(project: Path) -> Path:
    """The project's DVC cache folder (its cache.dir setting, default .dvc/cache)."""
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        return Path(repo.cache.legacy.path)


def create(project: Path, run_id: str, params: Params) -> Workspace:
    """Make (or reopen, for a retried run) the workspace of one run."""
    project = project.resolve()
    root = folder(project, run_id)
    raw = workspace_raw(params, project)
    text = f"# Prefect flow run {run_id}: the values of its form (synthloop ui)\n"
    text += yaml.safe_dump(raw, sort_keys=False)
    root.mkdir(parents=True, exist_ok=True)
    io.write_text(root / "params.yaml", text)
    for name in ("dvc.yaml", ".dvcignore"):
        if (project / name).is_file():
            shutil.copy2(project / name, root / name)
    if not (root / "flows").is_dir():  # the code dvc.yaml lists as dependencies, as it was at the start
        shutil.copytree(project / "flows", root / "flows", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dvc = root / ".dvc"
    dvc.mkdir(exist_ok=True)
    io.write_text(dvc / "config", "[core]\n    no_scm = true\n    analytics = false\n    check_update = false\n"
                  f"[cache]\n    dir = {_cache_dir(project)}\n")
    log.info("workspace %s (DVC cache %s)", root, _cache_dir(project))
    return Workspace(project, root, parse_params(raw, str(root / "params.yaml")))


def _restored(repo, stage: str) -> bool:
    """Check the stage's outputs out of DVC's run-cache if DVC ran it with these inputs before."""
    from dvc.stage.cache import RunCacheNotFoundError

    with repo.lock:
        try:
            repo.stage_cache.restore(repo.stage.collect(stage)[0])
        except RunCacheNotFoundError:
            return False
    return True


class RunCacheResume:
    """Skip what dvc.lock says is current (like versioning.DvcResume), restore what DVC's
    run-cache has, record the rest with `dvc commit` (which also saves a run-cache entry).
    One DVC repo is opened per stage (a few hundred ms each). DVC resolves dvc.yaml's paths
    against the current folder, so every DVC call runs inside the workspace."""

    def __init__(self, root: Path):
        self.root = root
        self.restored: list[str] = []

    def done(self, name: str, gen: int | None) -> bool:
        from dvc.repo import Repo

        stage = versioning.dvc_stage(name, gen)
        with contextlib.chdir(self.root), Repo(str(self.root)) as repo:
            if not repo.status(targets=[stage]):
                return True
            if not _restored(repo, stage):
                return False
            repo.commit(stage, force=True)
        log.info("dvc: %s restored from the run-cache (DVC ran it with the same inputs before)", stage)
        self.restored.append(stage)
        return True

    def record(self, name: str, gen: int | None) -> None:
        from dvc.repo import Repo

        stage = versioning.dvc_stage(name, gen)
        with contextlib.chdir(self.root), Repo(str(self.root)) as repo:
            repo.commit(stage, force=True)
        log.info("dvc: recorded %s in %s", stage, self.root / "dvc.lock")


def lock_record(lock: Path) -> list[dict[str, str]]:
    """dvc.lock as rows: stage, output, md5 (the data hashes of the run)."""
    if not lock.is_file():
        return []
    stages = (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages", {})
    rows = []
    for stage, body in stages.items():
        for out in body.get("outs", []):
            rows.append({"stage": stage, "output": out["path"], "md5": out.get("md5", "")})
    return rows

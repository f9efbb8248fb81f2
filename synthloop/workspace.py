"""One folder per UI run: its own params.yaml and DVC repo, sharing the project's DVC cache.

DVC locks a workspace for the length of a command and is no queue: two runs in
one folder would block or overwrite each other. So every run started from the
Prefect UI gets `<project>/.synthloop/runs/<flow-run-id>/` with

- params.yaml: the form's values (relative corpus paths made absolute, since
  they were relative to the project root);
- dvc.yaml and .dvcignore copied from the project, and a snapshot of the
  `synthloop/` sources that dvc.yaml lists as code dependencies;
- .dvc/config: a DVC repo without git (`core.no_scm`) whose `cache.dir` is the
  project's cache, so data and DVC's run-cache are shared between runs and with
  `dvc repro` in the project.

A stage DVC already ran with the same command, dependencies and params (in any
workspace or the project) is restored from the run-cache instead of recomputed;
every stage is committed (`dvc commit`, which also saves its run-cache entry),
so the workspace's dvc.lock is the run's DVC record: params and data hashes, and
`dvc status` / `dvc repro` work inside the folder (versioning.DvcResume(run_cache=True)).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import io
from .config import Params, parse_params

log = logging.getLogger("synthloop")

RUNS = Path(".synthloop") / "runs"
CODE = "synthloop"  # the package whose sources dvc.yaml lists as stage dependencies


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
    if not (root / CODE).is_dir():  # the code dvc.yaml lists as dependencies, as it was at the start
        shutil.copytree(project / CODE, root / CODE, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dvc = root / ".dvc"
    dvc.mkdir(exist_ok=True)
    io.write_text(
        dvc / "config",
        "[core]\n    no_scm = true\n    analytics = false\n    check_update = false\n"
        f"[cache]\n    dir = {_cache_dir(project)}\n",
    )
    log.info("workspace %s (DVC cache %s)", root, _cache_dir(project))
    return Workspace(project, root, parse_params(raw, str(root / "params.yaml")))

"""DVC glue: dvc.yaml from the stage table, and resume through DVC for the Prefect path.

`dvc repro` runs `synthloop stage ...` as subprocesses; the Prefect flow runs the
same stages in-process (no re-import of torch per stage) and then records them
with `dvc commit`, so both paths leave the same dvc.lock and cache. A UI run does
the same in its own workspace, restoring stages from DVC's run-cache first.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import yaml

from .io import DataError
from .layout import Layout
from .stages import table

log = logging.getLogger("synthloop")

PLOTTED = ["test_ppl", "distinct_2", "self_bleu", "unigram_kl", "rare_coverage", "ref_ppl_p50", "synthetic_share"]
HEADER = """\
# GENERATED from the stage table (synthloop/stages/table.py) by `synthloop dvc-yaml`: do not edit.
# The loop as DVC stages. Generation 0 trains on real data; generations 1..G follow
# loop.chain ({k: k-1}), each depending on the previous one's outputs. Every stage runs
# `synthloop stage NAME --gen K`: the same run_stage the Prefect flow calls. Paths come
# from params.yaml (paths.*), never written twice; each stage lists the exact params it reads.
"""


def _stage_body(stage: table.Stage, gen: int | str | None) -> dict:
    reads, writes = table.files(Layout.template(), stage, gen, "${item}" if gen == "${key}" else None)
    code = [f"synthloop/stages/{stage.name}.py", *stage.code]
    outs, metrics = [], []
    for out, path in zip(stage.writes, writes):
        entry = str(path) if out.cache else {str(path): {"cache": False}}
        (metrics if out.metric else outs).append(entry)
    body = {
        "cmd": f"synthloop stage {stage.name}" + ("" if gen is None else f" --gen {gen}"),
        "deps": [str(p) for p in reads] + code,
        "params": list(stage.params_at(gen)),
        "outs": outs,
    }
    return {**body, "metrics": metrics} if metrics else body


def dvc_yaml() -> str:
    """dvc.yaml's text: the once-per-loop and generation-0 stages, then one foreach per stage."""
    stages: dict[str, dict] = {}
    once = [s for s in table.TABLE if not s.per_generation]
    stages[once[0].name] = _stage_body(once[0], None)
    for stage in table.GENERATION:
        if stage.first == 0:
            stages[table.stage_id(stage.name, 0)] = _stage_body(stage, 0)
    for stage in table.GENERATION:
        stages[stage.name] = {"foreach": "${loop.chain}", "do": _stage_body(stage, "${key}")}
    for stage in once[1:]:
        stages[stage.name] = _stage_body(stage, None)
    plots = [{str(Layout.template().summary): {"x": "generation", "y": PLOTTED}}]
    return HEADER + yaml.safe_dump({"stages": stages, "plots": plots}, sort_keys=False, width=120)


def tracks(root: Path, params_file: Path) -> bool:
    """DVC records a run only when it uses the project's own params.yaml and dvc.yaml."""
    return (
        (root / ".dvc").is_dir()
        and (root / "dvc.yaml").is_file()
        and params_file.resolve() == (root / "params.yaml").resolve()
    )


@contextlib.contextmanager
def _repo(root: Path) -> Iterator:
    """The DVC repo at `root`, opened from inside it (DVC resolves dvc.yaml's paths against the cwd)."""
    from dvc.lock import LockError
    from dvc.repo import Repo

    try:
        with contextlib.chdir(root), Repo(str(root)) as repo:
            yield repo
    except LockError as exc:
        raise DataError(
            f"{root / '.dvc'}: DVC is busy ({str(exc).splitlines()[0]}); wait for the other "
            "dvc process to finish, then rerun the same command"
        ) from None


def _restored(repo, stage: str) -> bool:
    """Check the stage's outputs out of DVC's run-cache if DVC ran it with these inputs before."""
    from dvc.stage.cache import RunCacheNotFoundError

    with repo.lock:
        try:
            repo.stage_cache.restore(repo.stage.collect(stage)[0])
        except RunCacheNotFoundError:
            return False
    return True


class DvcResume:
    """Resume through DVC: a stage is done when `dvc status` says it is current; with
    `run_cache`, also when DVC's run-cache holds its outputs for these inputs (restored,
    then committed). A finished stage is recorded with `dvc commit`, which also saves
    its run-cache entry. One DVC repo is opened per call (a few hundred ms each)."""

    def __init__(self, root: Path, run_cache: bool = False):
        self.root, self.run_cache = root, run_cache
        self.restored: list[str] = []

    def done(self, name: str, gen: int | None) -> bool:
        stage = table.stage_id(name, gen)
        with _repo(self.root) as repo:
            if not repo.status(targets=[stage]):
                return True
            if not self.run_cache or not _restored(repo, stage):
                return False
            repo.commit(stage, force=True)
        log.info("dvc: %s restored from the run-cache (DVC ran it with the same inputs before)", stage)
        self.restored.append(stage)
        return True

    def record(self, name: str, gen: int | None) -> None:
        stage = table.stage_id(name, gen)
        with _repo(self.root) as repo:
            repo.commit(stage, force=True)
        log.info("dvc: recorded %s in %s", stage, self.root / "dvc.lock")


def lock_record(lock: Path) -> list[dict[str, str]]:
    """dvc.lock as rows: stage, output, md5 (the data hashes of the run)."""
    if not lock.is_file():
        return []
    stages = (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages", {})
    return [
        {"stage": stage, "output": out["path"], "md5": out.get("md5", "")}
        for stage, body in stages.items()
        for out in body.get("outs", [])
    ]

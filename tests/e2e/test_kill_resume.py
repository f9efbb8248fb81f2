"""SIGKILL at named points, then the same command again: the outputs are byte-identical to an
uninterrupted run and only the interrupted stage (and what follows) is recomputed.

Paths: `synthloop run --params FILE` (a Prefect flow; resumes from its stage ledger),
`synthloop run` on the project's params.yaml (Prefect + DVC) and `dvc repro` (the whole
process group killed, as when a machine stops). The kill comes from SYNTHLOOP_KILL_AT
(synthloop/faults.py): deterministic, no sleeps.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, copy_project

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
PROFILE = "kill.yaml"


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "PYTHONPATH": str(REPO), **extra}


def run(args: list[str], cwd: Path, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, cwd=cwd, env=env(**extra), capture_output=True, text=True, timeout=900, start_new_session=True
    )


def hashes(project: Path) -> dict[str, str]:
    from synthloop.io import md5_file

    files = [p for d in ("data", "gens") for p in (project / d).rglob("*") if p.is_file()]
    return {str(p.relative_to(project)): md5_file(p) for p in files if p.name not in (".ledger.json", ".timing.json")}


def reused(log: str) -> set[str]:
    return set(re.findall(r"stage (.+?): up to date", log))


@pytest.fixture(scope="module")
def server(ui):
    """The session's Prefect server (the shared `synthloop ui`'s) for every CLI run here."""
    return ui.api


def make_project(tmp_path: Path, as_params_yaml: bool = False) -> Path:
    project = copy_project(tmp_path)
    raw = yaml.safe_load((project / "profiles" / "tiny.yaml").read_text())
    raw["loop"]["chain"] = {"1": 0}
    raw["generate"]["batch_size"] = 16  # 4 batches, so a kill mid-generate leaves 1 of 4 shards to resume
    (project / (PROFILE if not as_params_yaml else "params.yaml")).write_text(yaml.safe_dump(raw, sort_keys=False))
    return project


@pytest.fixture(scope="module")
def reference(tmp_path_factory, server):
    project = make_project(tmp_path_factory.mktemp("ref"))
    out = run(["synthloop", "run", "--params", PROFILE], project, PREFECT_API_URL=server)
    assert out.returncode == 0, out.stderr[-3000:]
    return hashes(project)


# (kill point, stages the next attempt must reuse)
SEQUENCE = [
    ("mid:prepare", set()),
    ("after:prepare", set()),  # outputs written, not yet in the ledger: prepare runs again
    ("mid:mix0", set()),
    ("mid:train0", {"prepare"}),
    ("mid:evaluate0", {"prepare", "mix0"}),
    ("mid:generate@1", {"train0"}),
    ("before:grade@1", {"evaluate0"}),
    ("after:train@1", {"generate@1"}),
    ("before:report", {"grade@1", "mix@1"}),  # train@1 was never recorded: it runs again
]
# what the attempt after a kill must say it resumed inside a stage
RESUMED = {"before:grade@1": "gen 1: sampling: resumed 1 of 4 shards"}


def test_cli_run_killed_at_every_stage_resumes_byte_identical(tmp_path, server, reference):
    project = make_project(tmp_path)
    for point, must_reuse in SEQUENCE:
        out = run(["synthloop", "run", "--params", PROFILE], project, PREFECT_API_URL=server, SYNTHLOOP_KILL_AT=point)
        assert out.returncode == -signal.SIGKILL, f"{point}: not killed (rc {out.returncode})\n{out.stderr[-2000:]}"
        assert must_reuse <= reused(out.stderr), f"{point}: recomputed {must_reuse - reused(out.stderr)}"
        assert RESUMED.get(point, "") in out.stderr, f"{point}: {RESUMED[point]!r} not in the log"
        assert not list(project.rglob(".*.tmp")) or point.startswith("mid:")  # only a kill mid-write leaves temps
    out = run(["synthloop", "run", "--params", PROFILE], project, PREFECT_API_URL=server)
    assert out.returncode == 0, out.stderr[-3000:]
    assert {"prepare", "train@1", "evaluate@1"} <= reused(out.stderr) and "report: start" in out.stderr
    assert hashes(project) == reference
    assert not list(project.rglob(".*.tmp"))

    client = MlflowClient(f"sqlite:///{project / '.mlflow' / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=500)
    assert sum(r.info.status == "KILLED" for r in runs) >= len(SEQUENCE) - 2  # prepare/report kills hit the loop run
    assert not [r for r in runs if r.info.status == "RUNNING"]
    last = max((r for r in runs if r.data.tags.get("synthloop.generation") == "loop"), key=lambda r: r.info.start_time)
    assert "synthloop.resumed_from" in last.data.tags


def test_dvc_repro_killed_with_its_stage_resumes_byte_identical(tmp_path, reference):
    project = make_project(tmp_path, as_params_yaml=True)
    out = run(["dvc", "repro"], project, SYNTHLOOP_KILL_AT="mid:train@1", SYNTHLOOP_KILL_SCOPE="group")
    assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]
    out = run(["dvc", "repro"], project)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    ran = set(re.findall(r"Running stage '([^']+)'", out.stdout + out.stderr))
    assert ran == {"train@1", "evaluate@1", "report"}, ran
    assert hashes(project) == reference


def test_prefect_run_on_params_yaml_resumes_through_dvc(tmp_path, server, reference):
    project = make_project(tmp_path, as_params_yaml=True)
    out = run(["synthloop", "run"], project, PREFECT_API_URL=server, SYNTHLOOP_KILL_AT="after:grade@1")
    assert out.returncode == -signal.SIGKILL
    out = run(["synthloop", "run"], project, PREFECT_API_URL=server)
    assert out.returncode == 0, out.stderr[-3000:]
    assert {"prepare", "train0", "generate@1"} <= reused(out.stderr)
    assert hashes(project) == reference
    status = run(["dvc", "status"], project)
    assert "up to date" in status.stdout

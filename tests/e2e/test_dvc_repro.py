"""End to end on a copy of the project with the tiny profile: `dvc repro`, then the Prefect path.

The tiny profile reads the real default corpus from ../shared, as a fresh clone does.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, SHARED, copy_project
from tests.integration.test_bad_input import CASES, WRITER_CASES, documented

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def sh(*args: str, cwd: Path, **extra: str) -> str:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "PYTHONPATH": str(REPO), **extra}
    out = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"{' '.join(args)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout + out.stderr


def ran(log: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", log))


@pytest.fixture(scope="module")
def repro(tmp_path_factory):
    project = copy_project(tmp_path_factory.mktemp("dvc"))
    shutil.copy(project / "profiles" / "tiny.yaml", project / "params.yaml")
    log = sh("dvc", "repro", cwd=project)
    return project, log


def read_summary(project: Path) -> list[dict[str, str]]:
    with (project / "reports" / "summary.csv").open() as f:
        return list(csv.DictReader(f))


def test_repro_runs_the_whole_chain(repro):
    project, log = repro
    assert {
        "prepare",
        "mix0",
        "train0",
        "evaluate0",
        "generate@1",
        "grade@2",
        "mix@2",
        "train@2",
        "evaluate@2",
        "report",
    } <= ran(log)
    rows = read_summary(project)
    assert [r["generation"] for r in rows] == ["0", "1", "2"]
    assert float(rows[0]["synthetic_share"]) == 0 and float(rows[2]["synthetic_share"]) == 1
    assert all(float(r["test_ppl"]) > 1 for r in rows)
    assert (project / "gens" / "2" / "model" / "model.safetensors").is_file()
    assert (project / "dvc.lock").is_file()


def test_second_repro_does_nothing(repro):
    project, _ = repro
    log = sh("dvc", "repro", cwd=project)
    assert ran(log) == set() and "up to date" in log


def test_dag_shows_the_generation_chain(repro):
    project, _ = repro
    edges = sh("dvc", "dag", "--dot", cwd=project)
    assert re.search(r'"?train0"?\s*->\s*"?generate@1"?', edges)
    assert re.search(r'"?train@1"?\s*->\s*"?generate@2"?', edges)


def test_prefect_path_matches_dvc_and_leaves_the_same_trail(repro, tmp_path, ui):
    """`synthloop run` on a fresh copy (on the session's Prefect server) gives byte-identical data,
    and DVC then has nothing to do."""
    project, _ = repro
    other = copy_project(tmp_path)
    shutil.copy(other / "profiles" / "tiny.yaml", other / "params.yaml")
    out = sh("synthloop", "run", cwd=other, PREFECT_API_URL=ui.api)
    assert "synthloop summary" in out and "MLflow" in out
    for rel in [
        "data/train.jsonl",
        "data/tokenizer.json",
        "gens/1/synthetic.jsonl",
        "gens/2/train_set.jsonl",
        "gens/2/model/model.safetensors",
        "gens/2/metrics.json",
    ]:
        assert (other / rel).read_bytes() == (project / rel).read_bytes(), rel
    assert ran(sh("dvc", "repro", cwd=other)) == set()


def test_changing_a_mix_param_reruns_only_the_stages_that_read_it(repro, tmp_path):
    """In a copy (the module's project stays as repro left it): DVC plans exactly the stages whose
    params changed (mix0 does not read mix.strategy; train@K does: the dilution strategy cuts its
    batches), then mix@1 reruns with the new strategy."""
    project, _ = repro
    copy = tmp_path / "project"
    shutil.copytree(project, copy, symlinks=True)
    (tmp_path / "shared").symlink_to(SHARED)  # the corpus path is ../shared/...
    params = copy / "params.yaml"
    params.write_text(params.read_text().replace("strategy: replace", "strategy: accumulate"))
    assert ran(sh("dvc", "repro", "--dry", cwd=copy)) == {"mix@1", "mix@2", "train@1", "train@2", "report"}
    assert ran(sh("dvc", "repro", "mix@1", cwd=copy)) == {"mix@1"}
    assert json.loads((copy / "gens" / "1" / "mix.json").read_text())["synthetic_share"] < 1
    status = sh("dvc", "status", cwd=copy)
    assert "train@1" in status and "mix0" not in status  # downstream of the change only


@pytest.mark.parametrize("case", WRITER_CASES)
def test_a_bad_writer_is_the_generate_stages_one_line(case, repro, tmp_path):
    """docs/errors.md's writer cases through `dvc repro` (in a copy: generation 0 is current, so
    DVC goes straight to generate@1, which says the documented line)."""
    project, _ = repro
    copy = tmp_path / "project"
    shutil.copytree(project, copy, symlinks=True)
    (tmp_path / "shared").symlink_to(SHARED)
    raw = yaml.safe_load((copy / "params.yaml").read_text())
    CASES[case][1](raw)
    (copy / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "PYTHONPATH": str(REPO)}
    out = subprocess.run(["dvc", "repro"], cwd=copy, env=env, capture_output=True, text=True, timeout=600)
    log = out.stdout + out.stderr
    line = documented()[case][1].replace("<project>", str(copy))
    assert out.returncode != 0 and line in log.splitlines(), log[-3000:]
    assert ran(log) == {"generate@1"} and "Traceback" not in log

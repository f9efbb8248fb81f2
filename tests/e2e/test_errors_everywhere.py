"""docs/errors.md's data and writer cases where users meet them: `dvc repro` (the writer cases:
tests/e2e/test_dvc_repro.py), a UI run and `synthloop sweep`
(`synthloop stage` and `synthloop run`: tests/integration/test_bad_input.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from synthloop.config import parse_params
from tests.conftest import REPO, copy_project, small_corpus
from tests.integration.test_bad_input import DATA_CASES, WRITER_CASES, case_project, documented
from tests.ui_proc import form_parameters, wait_final

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return small_corpus(tmp_path_factory.mktemp("corpus"), n_train=80, n_test=10)


def expected(case: str, root: Path, corpus) -> str:
    code, message = documented()[case]
    return message.replace("<project>", str(root)).replace("<corpus>", str(corpus[0].parent))


def sh(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "PYTHONPATH": str(REPO)}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return copy_project(tmp_path_factory.mktemp("errors"))


@pytest.mark.parametrize("case", DATA_CASES)  # the writer cases: tests/e2e/test_dvc_repro.py (gen 0 done there)
def test_dvc_repro_shows_the_stages_one_line(case, corpus, project):
    case_project(case, corpus, project)
    out = sh(["dvc", "repro"], project)
    log = out.stdout + out.stderr
    line = expected(case, project, corpus)
    if case == "corpus-missing":  # a missing dependency: DVC says so itself, before the stage runs
        line = f"ERROR: failed to reproduce 'prepare': [Errno 2] No such file or directory: '{project / 'missing.txt'}'"
    assert out.returncode != 0 and line in log.splitlines(), log[-3000:]
    assert "Traceback" not in log


@pytest.mark.parametrize("case", DATA_CASES + WRITER_CASES)
def test_synthloop_sweep_says_it_in_one_line_before_any_loop(case, corpus, project):
    case_project(case, corpus, project, "sweep-base.yaml")
    out = sh(["synthloop", "sweep", "--grid", "mix.strategy=replace", "--params", "sweep-base.yaml"], project)
    assert out.returncode == 1 and out.stderr.strip() == expected(case, project, corpus), out.stderr[-2000:]
    assert not (project / "sweeps" / "grid" / "runs").exists()


def test_ui_runs_fail_with_the_line_as_their_state_message(ui, corpus):
    from prefect.deployments import run_deployment

    runs = {}
    for case in DATA_CASES + WRITER_CASES:  # submitted together: each fails in its preflight, before a workspace exists
        params = parse_params(case_project(case, corpus, ui.project, params_name=None))
        runs[case] = run_deployment("loop/default", parameters=form_parameters(params), timeout=0).id
    for case, run_id in runs.items():
        run = wait_final(run_id, timeout=300)
        line = expected(case, ui.project, corpus).removeprefix("error: ")
        assert run.state.is_failed() and line in run.state.message, (case, run.state.message)
        assert not (ui.project / ".synthloop" / "runs" / str(run_id)).exists()

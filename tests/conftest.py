"""Shared fixtures: a quiet offline environment and tiny projects built from the real corpus."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FAIRY = SHARED / "corpora" / "fairytales"


@pytest.fixture(autouse=True, scope="session")
def _offline_env(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    env = {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(home / "hf"),
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_HOME": str(home / "prefect"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DVC_NO_ANALYTICS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        # one job at a time, spinning OpenMP threads are faster; beside a second pytest-xdist
        # worker they steal its cores, so there they sleep (synthloop's own default, PASSIVE, is
        # for shared machines; bench/busy.py measures both)
        "OMP_WAIT_POLICY": "PASSIVE" if os.environ.get("PYTEST_XDIST_WORKER") else "ACTIVE",
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_CACHE_HOME": str(home / "cache"),
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("PREFECT_API_URL", None)
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


GGUF = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"  # `make models` (make test fetches it)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """llama.cpp's OpenAI-compatible server for SmolLM2 (what `synthloop serve` starts), shared by the session."""
    from synthloop.backends.serve import LlamaServer

    with LlamaServer(GGUF, "smollm2", free_port(), tmp_path_factory.mktemp("llama")) as server:
        yield server


def tiny_params(corpus: Path, test_corpus: Path | None, **overrides: dict) -> dict:
    """profiles/tiny.yaml pointed at the given corpus, with section overrides."""
    raw = yaml.safe_load((REPO / "profiles" / "tiny.yaml").read_text())
    raw["data"]["corpus"] = str(corpus)
    raw["data"]["test_corpus"] = str(test_corpus) if test_corpus else None
    for section, values in overrides.items():
        raw[section].update(values)
    return raw


def small_corpus(dest: Path, n_train: int = 200, n_test: int = 20) -> tuple[Path, Path]:
    """The first documents of the real fairy tales: fast, but real text."""
    docs = FAIRY.joinpath("train.txt").read_text(encoding="utf-8").split("\n\n")
    test = FAIRY.joinpath("test.txt").read_text(encoding="utf-8").split("\n\n")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "train.txt").write_text("\n\n".join(docs[:n_train]), encoding="utf-8")
    (dest / "test.txt").write_text("\n\n".join(test[:n_test]), encoding="utf-8")
    return dest / "train.txt", dest / "test.txt"


def write_params(root: Path, raw: dict, name: str = "params.yaml") -> Path:
    path = root / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def copy_project(dest: Path) -> Path:
    """A copy of the tracked project files (what a fresh clone has), with ../shared beside it."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    project = dest / "project"
    for rel in files:
        src = REPO / rel
        if src.is_file():
            (project / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, project / rel)
    (dest / "shared").symlink_to(SHARED)
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    return project


@pytest.fixture(scope="session")
def ui(tmp_path_factory):
    """One `synthloop ui` (Prefect server, MLflow UI, served deployments) for every UI test of the
    session, in a copy of the project, form defaults from params.yaml, at most 2 loop runs at once.
    Its teardown is the Ctrl-C test: everything it started stops cleanly (a failure is a teardown error)."""
    from tests.ui_proc import SharedUi, assert_stopped_cleanly

    proc = SharedUi(copy_project(tmp_path_factory.mktemp("ui"))).start()
    try:
        yield proc
    finally:
        assert_stopped_cleanly(proc)

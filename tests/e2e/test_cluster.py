"""Loops on a real Dask cluster: `synthloop sweep` on a local cluster started by --workers and on
an existing scheduler and workers started the way a real cluster's are (`dask scheduler`,
`dask worker` processes on 127.0.0.1), a worker SIGKILLed mid-loop, the one-line errors, and
`synthloop run --workers 2` sampling and judging each generation's shards on the workers
(batches of 16 samples and the generation-0 model as judge: 4 sampling shards and 2 judge
shards per generation)."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, free_port, small_corpus, tiny_params, write_params

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
SPEC = {"name": "two", "seeds": [0], "arms": {"replace": {}, "accumulate": {"mix.strategy": "accumulate"}}}
TIMINGS = ("seconds", "_s", "per_s")  # wall-clock columns differ from run to run


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "SYNTHLOOP_CLUSTER")}
    return {**base, "PATH": f"{BIN}:{os.environ['PATH']}", "PYTHONPATH": str(REPO), **extra}


def sweep(project: Path, *flags: str, **extra: str) -> subprocess.CompletedProcess:
    args = [str(BIN / "synthloop"), "sweep", "two.yaml", *flags]
    return subprocess.run(args, cwd=project, env=env(**extra), capture_output=True, text=True, timeout=600)


def make_project(folder: Path, corpus) -> Path:
    folder.mkdir(parents=True)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    raw = tiny_params(
        *corpus,
        compute={"threads": 1},
        loop={"chain": {"1": 0}},  # one generation: every cluster path is in it
        tracking={"uri": uri},
        generate={"batch_size": 16},
        grade={"steps": ["filters", "judge"], "judge_model_dir": "gen0", "judge_min_score": 1.0},
    )
    write_params(folder, raw)
    (folder / "two.yaml").write_text(yaml.safe_dump(SPEC, sort_keys=False))
    return folder


def results(project: Path) -> list[dict[str, str]]:
    rows = list(csv.DictReader((project / "sweeps" / "two" / "summary.csv").open()))
    return [{k: v for k, v in r.items() if not k.endswith(TIMINGS)} for r in rows]


def loop_runs(project: Path) -> list:
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    exp = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(exp, "tags.`synthloop.generation` = 'loop'")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return small_corpus(tmp_path_factory.mktemp("corpus"), n_train=120, n_test=10)


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory, corpus):
    """The sweep run one loop after another in one process: what every cluster run must equal."""
    project = make_project(tmp_path_factory.mktemp("cluster") / "one", corpus)
    out = sweep(project)
    assert out.returncode == 0, out.stderr[-3000:]
    return project


class Cluster:
    """A scheduler and worker processes on 127.0.0.1, as `dask scheduler` / `dask worker` start them."""

    def __init__(self, folder: Path):
        self.folder, self.port = folder, free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen] = []

    def _start(self, args: list[str], log: str, prefix: list[str] | None = None, **extra: str) -> None:
        out = (self.folder / log).open("w")
        cmd = [*(prefix or []), str(BIN / "dask"), *args]
        self.procs.append(
            subprocess.Popen(cmd, cwd=self.folder, env=env(**extra), stdout=out, stderr=subprocess.STDOUT)
        )

    def scheduler(self) -> Cluster:
        self._start(["scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"], "scheduler.log")
        deadline = time.monotonic() + 60  # ready when its port accepts (its log may say so late, or never)
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    break
            time.sleep(0.3)
        return self

    def worker(self, name: str, prefix: list[str] | None = None, **extra: str) -> Cluster:
        args = ["worker", self.address, "--nthreads", "1", "--no-dashboard", "--name", name]
        self._start(args, f"{name}.log", prefix, SYNTHLOOP_CPUS="1", **extra)
        return self

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.send_signal(signal.SIGINT)
        for p in reversed(self.procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.stop()


def fresh_copy(project: Path, dest: Path) -> Path:
    """The same params and sweep in another folder, with nothing run yet."""
    shutil.copytree(project, dest, ignore=shutil.ignore_patterns("sweeps", "mlflow.db", ".*"))
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["tracking"]["uri"] = f"sqlite:///{dest / 'mlflow.db'}"
    write_params(dest, params)
    return dest


def test_a_local_cluster_of_two_workers_gives_one_workers_results(one_worker, tmp_path):
    project = fresh_copy(one_worker, tmp_path / "two")

    out = sweep(project, "--workers", "2")

    assert out.returncode == 0, out.stderr[-3000:]
    assert "on a local Dask cluster of 2 worker processes" in out.stdout
    assert results(project) == results(one_worker)
    runs = loop_runs(project)
    assert sorted(r.info.run_name for r in runs) == ["two/accumulate-s0", "two/replace-s0"]
    pids = {r.data.tags["synthloop.worker.pid"] for r in runs}
    assert len(pids) == 2 and str(os.getpid()) not in pids  # each loop on its own worker process


def test_a_worker_killed_mid_loop_is_retried_elsewhere_with_the_same_results(one_worker, tmp_path, cluster, ui):
    project = fresh_copy(one_worker, tmp_path / "killed")
    mark = tmp_path / "killed-once"
    kill = {"SYNTHLOOP_KILL_AT": "mid:train@1", "SYNTHLOOP_KILL_ONCE": str(mark)}
    cluster.scheduler().worker("w1", **kill).worker("w2", **kill)

    out = sweep(project, "--cluster", cluster.address, PREFECT_API_URL=ui.api)

    assert out.returncode == 0, out.stderr[-3000:]
    assert mark.is_file()  # a worker did die in the middle of a train stage
    assert results(project) == results(one_worker)
    assert sorted(r.info.run_name for r in loop_runs(project)) == ["two/accumulate-s0", "two/replace-s0"]


def test_an_unreachable_cluster_is_one_line(one_worker):
    address = f"127.0.0.1:{free_port()}"
    out = sweep(one_worker, "--cluster", address)
    assert out.returncode == 2  # a ConfigError
    assert out.stderr.strip() == (
        f"error: cluster tcp://{address}: no scheduler answers (OSError); start one with "
        "`dask scheduler --host 127.0.0.1` or fix --cluster / SYNTHLOOP_CLUSTER"
    )


def test_a_cluster_without_workers_is_one_line(one_worker, cluster):
    cluster.scheduler()
    out = subprocess.run(
        [str(BIN / "synthloop"), "sweep", "two.yaml"],
        cwd=one_worker,
        env=env(SYNTHLOOP_CLUSTER=cluster.address, SYNTHLOOP_CLUSTER_WAIT_S="3"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2  # a ConfigError
    assert out.stderr.strip() == (
        f"error: cluster {cluster.address}: no workers after 3.0 s; start some with `dask worker {cluster.address}`"
    )


def test_a_worker_that_cannot_see_the_project_is_one_line(one_worker, cluster):
    hidden = f'mount -t tmpfs none "{one_worker}" && exec "$0" "$@"'  # a tmpfs over the project: it is not there
    hide = ["unshare", "-m", "--propagation", "private", "sh", "-c", hidden]
    if subprocess.run([*hide[:4], "true"], capture_output=True).returncode != 0:
        pytest.skip("no mount namespaces here (unshare -m needs CAP_SYS_ADMIN)")
    cluster.scheduler().worker("blind", prefix=hide)
    out = sweep(one_worker, "--cluster", cluster.address)
    assert out.returncode == 2, out.stderr[-2000:]
    line = out.stderr.strip()
    assert line.startswith(f"error: cluster {cluster.address}: worker tcp://127.0.0.1:") and "\n" not in line
    assert f"cannot see the project folder {one_worker}: cannot read {one_worker}/.synthloop-cluster-check" in line
    assert not (one_worker / ".synthloop-cluster-check").exists()


def test_synthloop_run_samples_and_judges_on_the_workers_to_the_same_bytes(one_worker, tmp_path):
    project = fresh_copy(one_worker, tmp_path / "spread")  # params.yaml: the sweep's replace arm
    out = subprocess.run(
        [str(BIN / "synthloop"), "run", "--workers", "2"], cwd=project, env=env(), capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "gen 1: sampling: 4 shards to the cluster's workers" in out.stderr + out.stdout
    assert "gen 1: judge samples: 2 shards to the cluster's workers" in out.stderr + out.stdout
    for k in (1,):  # the same bytes as the one-process sweep's replace loop sampled and judged itself
        there = one_worker / "sweeps" / "two" / "runs" / "replace-s0" / "gens" / str(k)
        for name in ("synthetic.jsonl", "graded.jsonl"):
            assert (project / "gens" / str(k) / name).read_bytes() == (there / name).read_bytes(), name

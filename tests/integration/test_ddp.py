"""Data-parallel training through the train stage (what `synthloop run`, `dvc repro` and sweeps
run): compute.train_processes 2 starts two torchrun ranks (gloo) whose loss curve and weights
equal one process's with the same global batch, within float rounding."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from tests.conftest import REPO, small_corpus, tiny_params, write_params

BIN = Path(sys.executable).parent
TOLERANCE = 1e-4  # nats on the loss, and on any weight, after 40 steps


def stage(root: Path, params: str, *args: str) -> None:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [str(BIN / "synthloop"), "stage", *args, "--params", params], cwd=root, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-3000:]


def curve(uri: str) -> dict[str, list[float]]:
    """Generation 0's logged training loss of each loop (one per params file), in step order."""
    client = MlflowClient(uri)
    exp = [e.experiment_id for e in client.search_experiments()]
    out = {}
    for run in client.search_runs(exp, "tags.`synthloop.generation` = '0'"):
        loop = run.data.tags["synthloop.loop_id"]
        history = client.get_metric_history(run.info.run_id, "train.train_loss")
        out[loop] = [m.value for m in sorted(history, key=lambda m: m.step)]
    return out


@pytest.mark.slow
def test_two_ranks_train_like_one_process_with_the_same_global_batch(tmp_path):
    train, test = small_corpus(tmp_path / "corpus", n_train=80, n_test=10)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    knobs = {"train": {"steps": 40, "batch_size": 8, "micro_batch": 2}, "tracking": {"uri": uri}}
    write_params(tmp_path, tiny_params(train, test, compute={"threads": 2}, **knobs), "one.yaml")
    write_params(tmp_path, tiny_params(train, test, compute={"threads": 2, "train_processes": 2}, **knobs), "two.yaml")
    stage(tmp_path, "one.yaml", "prepare")
    stage(tmp_path, "one.yaml", "mix", "--gen", "0")
    weights = tmp_path / "gens" / "0" / "model" / "model.safetensors"
    stage(tmp_path, "one.yaml", "train", "--gen", "0")
    one = load_file(weights)
    stage(tmp_path, "two.yaml", "train", "--gen", "0")  # same data and seed: only the process count differs
    two = load_file(weights)

    curves = list(curve(uri).values())
    assert len(curves) == 2 and len(curves[0]) == len(curves[1]) >= 5  # steps 0, 10, 20, 30, 39
    assert max(abs(a - b) for a, b in zip(*curves)) < TOLERANCE
    assert max((one[k] - two[k]).abs().max().item() for k in one) < TOLERANCE
    assert not (tmp_path / "gens" / "0" / "ddp").exists()  # the job folder is cleaned up

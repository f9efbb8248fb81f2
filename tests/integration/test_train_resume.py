"""A train stage SIGKILLed after a checkpoint resumes from it: final weights identical to an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from synthloop.config import parse_params
from synthloop.layout import Layout
from synthloop.runner import run_stage
from tests.conftest import REPO, small_corpus, tiny_params, write_params

BIN = Path(sys.executable).parent


def test_killed_train_resumes_from_its_checkpoint_with_identical_weights(tmp_path):
    train, test = small_corpus(tmp_path / "corpus", n_train=120, n_test=10)
    raw = tiny_params(train, test, loop={"chain": {"1": 0}}, train={"steps": 30, "checkpoint_every": 10})
    params = parse_params(raw)
    roots = {name: tmp_path / name for name in ("ref", "killed")}
    for root in roots.values():
        root.mkdir()
        write_params(root, raw)
        for stage, gen in (("prepare", None), ("mix", 0)):
            run_stage(stage, params, root, gen)
    run_stage("train", params, roots["ref"], 0)  # uninterrupted, in-process

    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "PYTHONPATH": str(REPO),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    cmd = [str(BIN / "synthloop"), "stage", "train", "--gen", "0"]
    lay = Layout.of(params, roots["killed"])
    out = subprocess.run(
        cmd, cwd=lay.root, env={**env, "SYNTHLOOP_KILL_AT": "ckpt:train0"}, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]
    assert lay.train_checkpoint(0).is_file() and not lay.model(0).exists()
    out = subprocess.run(cmd, cwd=lay.root, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "resumed from step 10" in out.stderr
    ref = Layout.of(params, roots["ref"]).model(0) / "model.safetensors"
    assert (lay.model(0) / "model.safetensors").read_bytes() == ref.read_bytes()
    assert not lay.train_checkpoint(0).exists()  # removed once the model was saved

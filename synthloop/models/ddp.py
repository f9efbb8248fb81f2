"""Data-parallel training: torchrun starts compute.train_processes ranks of one train stage.

The stage process writes a job file (params, project folder, generation), runs
`python -m torch.distributed.run --standalone --nproc-per-node N -m synthloop.models.ddp JOB`
and waits. Each rank joins the process group (gloo on CPU, nccl on CUDA), takes threads / N
CPU threads and runs the same train stage (synthloop.stages.train.fit): the trainer gives it
its share of every global batch and DistributedDataParallel averages the gradients. Rank 0
saves the model and writes result.json (the stage's numbers and the loss curve); the stage
process logs them to MLflow as if it had trained itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..io import DataError, read_json, write_json

JOB, RESULT = "job.json", "result.json"


def launch(ctx) -> dict[str, float]:
    """Train generation ctx.gen in compute.train_processes processes; the stage's numbers."""
    p, lay, k = ctx.params, ctx.layout, ctx.gen
    n = p.compute.train_processes
    work = lay.gen(k) / "ddp"
    shutil.rmtree(work, ignore_errors=True)
    write_json(work / JOB, {"params": p.model_dump(mode="json"), "root": str(lay.root), "gen": k})
    from ..resources import available_cpus

    threads = max(1, (p.compute.threads or available_cpus()) // n)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "SYNTHLOOP_CPUS": str(threads)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}"]
    done = subprocess.run([*cmd, "-m", "synthloop.models.ddp", str(work / JOB)], env=env)
    result = read_json(work / RESULT) if (work / RESULT).is_file() else {}
    if "error" in result:
        raise DataError(result["error"])
    if done.returncode != 0 or "stats" not in result:
        raise RuntimeError(f"data-parallel training (torchrun, {n} processes) exited {done.returncode}; see above")
    for key, value, step in result["metrics"]:
        ctx.log_metric(key, value, step)
    shutil.rmtree(work, ignore_errors=True)
    return result["stats"]


def main(job_file: str) -> None:
    """One rank (torchrun sets RANK, WORLD_SIZE, MASTER_ADDR/PORT)."""
    import torch
    import torch.distributed as dist

    from ..config import Params
    from ..layout import Layout
    from ..stages.context import StageContext
    from ..stages.train import fit

    job = read_json(Path(job_file))
    params = Params.model_validate(job["params"])
    dist.init_process_group("nccl" if params.compute.device != "cpu" and torch.cuda.is_available() else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if params.compute.device != "cpu" and torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)))
    share = max(1, int(os.environ.get("OMP_NUM_THREADS", "1")))
    params = params.model_copy(update={"compute": params.compute.model_copy(update={"threads": share})})
    metrics: list[tuple[str, float, int]] = []
    ctx = StageContext(params, Layout.of(params, Path(job["root"])), job["gen"], lambda *m: metrics.append(m))
    out: dict[str, Any]
    try:
        out = {"stats": fit(ctx, world=world, rank=rank), "metrics": metrics}
    except DataError as exc:
        out = {"error": str(exc)}
    if rank == 0:
        write_json(Path(job_file).with_name(RESULT), out)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])

"""run_stage: the single adapter both triggers use (DVC's command and Prefect's tasks)."""

from __future__ import annotations

import importlib
import logging
import time
from pathlib import Path

from . import faults, io
from .config import ConfigError, Params
from .layout import Layout
from .stages.context import StageContext
from .tracking import LoopTracker

STAGES = ("prepare", "generate", "grade", "mix", "train", "evaluate", "report")
PER_GENERATION = {"generate", "grade", "mix", "train", "evaluate"}
FROM_GEN_1 = {"generate", "grade"}

log = logging.getLogger("synthloop")


def _no_metric(key: str, value: float, step: int) -> None:
    pass


def check_stage(name: str, gen: int | None, params: Params) -> None:
    if name not in STAGES:
        raise ConfigError(f"unknown stage '{name}'; choose one of: {', '.join(STAGES)}")
    if name in PER_GENERATION:
        low = 1 if name in FROM_GEN_1 else 0
        if gen is None or not low <= gen <= params.loop.generations:
            raise ConfigError(f"stage {name} needs --gen between {low} and {params.loop.generations} (loop.chain)")
    elif gen is not None:
        raise ConfigError(f"stage {name} runs once per loop; drop --gen")


def run_stage(name: str, params: Params, root: Path, gen: int | None = None,
              tracker: LoopTracker | None = None, reuse: bool = False) -> dict[str, float]:
    """Run one stage on the files under `root`; log it to MLflow when a tracker is given.

    reuse=True: the outputs are already there and current (DVC said so): read the
    stage's numbers back instead of recomputing, and log them as usual.
    """
    check_stage(name, gen, params)
    lay = Layout.of(params, root)
    label = name if gen is None else f"{name}[gen {gen}]"
    point = name if gen is None else f"{name}@{gen}"
    log.info("stage %s: %s", label, "up to date, reusing its outputs" if reuse else "start")
    start = time.perf_counter()

    compute_s = 0.0

    def compute(log_metric=_no_metric) -> dict[str, float]:
        nonlocal compute_s
        if reuse:
            stats = lay.stats(name, gen or 0)
            return io.read_json(stats) if stats and stats.is_file() else {}
        for folder in (lay.data, lay.gens, lay.gen(gen or 0), lay.reports):
            for stale in io.stale_temps(folder):  # left by a killed run: never read, safe to drop
                log.info("removing %s, a partial file from an interrupted run", stale)
                io.remove(stale)
        ctx = StageContext(params, lay, gen or 0, log_metric)
        begin = time.perf_counter()
        faults.point(f"before:{point}")
        try:
            return importlib.import_module(f"flows.stages.{name}").run(ctx)
        finally:
            compute_s = time.perf_counter() - begin

    if tracker is None:
        metrics = compute()
    else:
        with tracker.stage(name, gen) as stage_log:
            metrics = compute(stage_log.metric)
            stage_log.result(metrics, time.perf_counter() - start, reused=reuse)
    if not reuse:
        faults.point(f"after:{point}")
    log.info("stage %s: done in %.2fs (compute %.2fs) %s", label, time.perf_counter() - start, compute_s,
             {k: round(v, 4) for k, v in list(metrics.items())[:6]})
    return metrics

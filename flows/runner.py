"""run_stage: the single adapter both triggers use (DVC's command and Prefect's tasks)."""

from __future__ import annotations

import importlib
import logging
import time
from pathlib import Path

from .config import ConfigError, Params
from .layout import Layout
from .stages.context import StageContext
from .tracking import LoopTracker

STAGES = ("prepare", "generate", "grade", "mix", "train", "evaluate", "report")
PER_GENERATION = {"generate", "grade", "mix", "train", "evaluate"}
FROM_GEN_1 = {"generate", "grade"}

log = logging.getLogger("synthloop")


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
              tracker: LoopTracker | None = None) -> dict[str, float]:
    """Run one stage on the files under `root`; log it to MLflow when a tracker is given."""
    check_stage(name, gen, params)
    module = importlib.import_module(f"flows.stages.{name}")
    label = name if gen is None else f"{name}[gen {gen}]"
    log.info("stage %s: start", label)
    start = time.perf_counter()
    if tracker is None:
        ctx = StageContext(params, Layout.of(params, root), gen or 0)
        metrics = module.run(ctx)
    else:
        with tracker.stage(name, gen) as stage_log:
            ctx = StageContext(params, Layout.of(params, root), gen or 0, log_metric=stage_log.metric)
            metrics = module.run(ctx)
            stage_log.result(metrics, time.perf_counter() - start)
    log.info("stage %s: done in %.1fs %s", label, time.perf_counter() - start,
             {k: round(v, 4) for k, v in list(metrics.items())[:6]})
    return metrics

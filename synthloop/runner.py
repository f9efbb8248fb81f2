"""run_stage: the single adapter both triggers use (DVC's command and Prefect's tasks)."""

from __future__ import annotations

import importlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from . import faults, io
from .config import Params
from .layout import Layout
from .stages import table
from .stages.context import StageContext
from .tracking import LoopTracker

log = logging.getLogger("synthloop")

MetricSink = Callable[[str, float, int], None]


def _no_metric(key: str, value: float, step: int) -> None:
    pass


def _clear_partial_files(lay: Layout, gen: int | None) -> None:
    for folder in (lay.data, lay.gens, lay.gen(gen or 0), lay.reports):
        for stale in io.stale_temps(folder):  # left by a killed run: never read, safe to drop
            log.info("removing %s, a partial file from an interrupted run", stale)
            io.remove(stale)


def _cpu_seconds() -> float:
    """CPU seconds of this process (all its threads) and of its finished children (torchrun ranks)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _record_time(path: Path, sid: str, wall: float, cpu: float) -> None:
    times = io.read_json(path) if path.is_file() else {}
    io.write_json(path, {**times, sid: {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3)}})


def run_stage(
    name: str,
    params: Params,
    root: Path,
    gen: int | None = None,
    tracker: LoopTracker | None = None,
    reuse: bool = False,
) -> dict[str, float]:
    """Run one stage on the files under `root`; log it to MLflow when a tracker is given.

    reuse=True: the outputs are already there and current (DVC said so): read the
    stage's numbers back instead of recomputing, and log them as usual.
    """
    stage = table.check(name, gen, params.loop.generations)
    lay = Layout.of(params, root)
    sid = table.stage_id(name, gen)
    log.info("stage %s: %s", sid, "up to date, reusing its outputs" if reuse else "start")
    start = time.perf_counter()
    compute_s = 0.0

    def compute(sink: MetricSink) -> dict[str, float]:
        nonlocal compute_s
        if reuse:
            stats = table.stats_file(lay, stage, gen)
            return io.read_json(stats) if stats and stats.is_file() else {}
        _clear_partial_files(lay, gen)
        ctx = StageContext(params, lay, gen or 0, sink)
        begin, cpu = time.perf_counter(), _cpu_seconds()
        faults.point(f"before:{sid}")
        try:
            out = importlib.import_module(f"{__package__}.stages.{name}").run(ctx)
        finally:
            compute_s = time.perf_counter() - begin
        if gen is not None:
            _record_time(lay.timing(gen), sid, compute_s, _cpu_seconds() - cpu)
        return out

    if tracker is None:
        metrics = compute(_no_metric)
    else:
        with tracker.stage(stage, gen) as stage_log:
            metrics = compute(stage_log.metric)
            stage_log.result(metrics, time.perf_counter() - start, reused=reuse)
    if not reuse:
        faults.point(f"after:{sid}")
    log.info(
        "stage %s: done in %.2fs (compute %.2fs) %s",
        sid,
        time.perf_counter() - start,
        compute_s,
        {k: round(v, 4) for k, v in list(metrics.items())[:6]},
    )
    return metrics

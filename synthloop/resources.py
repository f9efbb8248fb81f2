"""The CPUs this process may really use: its affinity mask, capped by a cgroup CPU quota."""

from __future__ import annotations

import math
import os
from pathlib import Path

CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" or "max <period>"


def cgroup_cpus(cpu_max: Path = CPU_MAX) -> int | None:
    """CPUs allowed by a cgroup v2 quota (quota / period, rounded up), or None without a quota."""
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def available_cpus() -> int:
    """CPUs this process may run on (sched affinity), at most the cgroup quota, and at most
    SYNTHLOOP_CPUS where a cluster worker is given its share of the machine."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_cpus()
    share = os.environ.get("SYNTHLOOP_CPUS", "")
    cpus = min(cpus, int(share)) if share.isdigit() and int(share) > 0 else cpus
    return max(1, min(cpus, quota) if quota else cpus)

"""The CPUs a process may use: affinity, capped by a cgroup v2 quota; compute.threads: auto."""

from __future__ import annotations

import os

from synthloop import resources
from synthloop.config import parse_params


def test_cgroup_quota(tmp_path):
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("150000 100000\n")
    assert resources.cgroup_cpus(cpu_max) == 2  # 1.5 CPUs of quota: 2 threads
    cpu_max.write_text("max 100000\n")
    assert resources.cgroup_cpus(cpu_max) is None
    assert resources.cgroup_cpus(tmp_path / "missing") is None


def test_available_cpus_is_the_affinity_at_most_the_quota(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(resources, "cgroup_cpus", lambda: 3)
    assert resources.available_cpus() == 3
    monkeypatch.setattr(resources, "cgroup_cpus", lambda: None)
    assert resources.available_cpus() == 4


def test_threads_auto_means_zero(raw):
    raw["compute"]["threads"] = "auto"
    assert parse_params(raw, "params.yaml").compute.threads == 0

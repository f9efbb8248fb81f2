"""Orchestration overhead: wall time of a loop through Prefect and through `dvc repro` vs the stages' own compute.

    python bench/overhead.py [--profile profiles/tiny.yaml] [--only prefect|dvc]

Each path runs in a fresh copy of the project (with ../shared beside it). The
stages' compute is the time spent inside the stage functions, read from the
`stage ...: done in ... (compute Xs)` log lines; everything else (process start,
imports, Prefect, DVC, MLflow) is overhead.
Last line: RESULT overhead_fraction=<worst of the two paths>
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def fresh_copy(dest: Path) -> Path:
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    project = dest / "project"
    for rel in files:
        if (ROOT / rel).is_file():
            (project / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, project / rel)
    (dest / "shared").symlink_to(ROOT.parent / "shared")
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    return project


def measure(cmd: list[str], profile: str) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        project = fresh_copy(Path(tmp))
        if Path(profile) != Path("params.yaml"):  # the default profile is params.yaml itself
            shutil.copy(project / profile, project / "params.yaml")
        env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
        start = time.perf_counter()
        out = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if out.returncode:
            sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
        compute = [float(x) for x in re.findall(r"\(compute ([\d.]+)s\)", out.stdout + out.stderr)]
        return wall, sum(compute), len(compute)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="profiles/tiny.yaml")
    ap.add_argument("--only", choices=["prefect", "dvc"])
    args = ap.parse_args()
    paths = {"prefect": ["synthloop", "run"], "dvc": ["dvc", "repro"]}
    worst = 0.0
    print(f"profile {args.profile}; {os.cpu_count()} cores")
    print(f"{'path':<8} {'wall s':>8} {'compute s':>10} {'stages':>7} {'overhead':>9}")
    for name, cmd in paths.items():
        if args.only and name != args.only:
            continue
        wall, compute, n = measure(cmd, args.profile)
        frac = (wall - compute) / wall
        worst = max(worst, frac)
        print(f"{name:<8} {wall:>8.1f} {compute:>10.1f} {n:>7} {frac:>9.1%}")
    print(f"RESULT overhead_fraction={worst:.3f}")


if __name__ == "__main__":
    main()

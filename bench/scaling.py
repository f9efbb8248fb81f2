"""How cost grows: sampling and training time at 1x, 2x, 4x the work, what `accumulate` adds,
and a sweep's wall time on 1 and on 2 Dask workers.

    python bench/scaling.py [--samples 256] [--steps 20] [--arms 4]

Sampling time should double with the number of samples and training time with
the number of steps (both linear). Training runs a fixed number of steps, so
`accumulate` pays for its growing pool only where the pool is read: tokenizing
and packing the training set, measured here at 1, 2 and 4 generations' worth.
The sweep part runs `synthloop sweep` on a tiny project (--arms strategies x 1 seed, 2
generations, compute.threads auto) one loop after another, then with --workers 2 (a local Dask
cluster: 2 processes, 1 thread each), wall time of the whole command in both. From the anchor
sweep's measured cost (21 loops in ~1.5 h on these 2 cores, EXPERIMENTS.md) it prints what
4 such nodes (one 2-thread worker each) would take: the 21 loops in waves of 4 at the measured
cost per loop (a lower bound: each seed's generation 0 runs before that seed's other loops start).
Last line: RESULT sample_linearity=<t4x / 4 t1x> train_linearity=<t4x / 4 t1x> pack_s_per_1k_docs=<s>
           sweep_1w_s=<s> sweep_2w_s=<s> sweep_speedup=<x> anchor_4nodes_min=<minutes>
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import train_params  # noqa: E402
from synthloop.config import SELF_LOCAL, GenerateParams, ModelParams  # noqa: E402
from synthloop.models import lm  # noqa: E402
from synthloop.models.sampler import sample  # noqa: E402
from synthloop.models.trainer import train  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpora" / "fairytales" / "train.txt"
ANCHOR_LOOPS, ANCHOR_SEEDS, ANCHOR_CPU_S = 21, 3, 1.5 * 3600  # sweeps/anchor.yaml as measured (EXPERIMENTS.md)


def sweep_seconds(arms: int, workers: int, steps: int) -> float:
    """Wall time of `synthloop sweep` over `arms` strategies on a fresh tiny project."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        docs = CORPUS.read_text(encoding="utf-8").split("\n\n")
        test = CORPUS.with_name("test.txt").read_text(encoding="utf-8").split("\n\n")
        (root / "train.txt").write_text("\n\n".join(docs[:150]), encoding="utf-8")
        (root / "test.txt").write_text("\n\n".join(test[:10]), encoding="utf-8")
        raw = yaml.safe_load((ROOT / "profiles" / "tiny.yaml").read_text())
        raw["data"].update(corpus=str(root / "train.txt"), test_corpus=str(root / "test.txt"))
        raw["compute"]["threads"] = "auto"  # each worker takes its share of the cores
        raw["train"]["steps"] = steps  # loops long enough that starting workers is not all there is
        (root / "params.yaml").write_text(yaml.safe_dump(raw))
        strategies = ["replace", "accumulate", "accumulate_subsample", "fixed_fraction"][:arms]
        spec = {"name": "bench", "seeds": [0], "arms": {s: {"mix.strategy": s} for s in strategies}}
        (root / "bench.yaml").write_text(yaml.safe_dump(spec))
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}
        env.pop("PREFECT_API_URL", None)
        start = time.perf_counter()
        out = subprocess.run(
            ["synthloop", "sweep", "bench.yaml", "--workers", str(workers)],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
        )
        if out.returncode:
            raise SystemExit(out.stderr[-2000:])
        return time.perf_counter() - start


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--arms", type=int, default=4, choices=range(2, 5))
    ap.add_argument("--sweep-steps", type=int, default=400, help="train.steps of each tiny loop in the sweep part")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count())
    docs = CORPUS.read_text(encoding="utf-8").split("\n\n")
    tok = lm.train_tokenizer(docs[:600], 4096)
    eos = lm.eos_id(tok)
    mcfg = ModelParams(source="scratch", arch="gpt2", n_layer=2, n_embd=128, n_head=4, context=256)
    model = lm.build_model(mcfg, tok.vocab_size, eos, seed=0).eval()
    stream = lm.pack(tok, docs[:600])
    gcfg = GenerateParams(
        **SELF_LOCAL,
        num_samples=1,
        max_new_tokens=128,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        prompt="bos",
        prompt_tokens=1,
        template=None,
        topics=None,
        batch_size=128,
    )
    print(f"{'x':>3} {'sample s':>9} {'train s':>8} {'pack s':>7} {'pool docs':>10}")
    rows = {}
    for x in (1, 2, 4):
        n = args.samples * x
        s = timed(lambda n=n: sample(model, [[eos]] * n, gcfg, eos, 0, torch.device("cpu")))
        tcfg = train_params(args.steps * x)
        t = timed(
            lambda tcfg=tcfg: train(lm.build_model(mcfg, tok.vocab_size, eos, 0), stream, tcfg, 0, torch.device("cpu"))
        )
        pool = docs[: 600 * x]
        p = timed(lambda pool=pool: lm.pack(tok, pool))
        rows[x] = (s, t, p, len(pool))
        print(f"{x:>3} {s:>9.2f} {t:>8.2f} {p:>7.2f} {len(pool):>10}")
    one, two = sweep_seconds(args.arms, 1, args.sweep_steps), sweep_seconds(args.arms, 2, args.sweep_steps)
    print(f"sweep of {args.arms} tiny loops: {one:.1f} s one after another, {two:.1f} s on 2 workers")
    # on paper: the anchor sweep on 4 nodes of these 2 cores, one worker per node
    per_loop = ANCHOR_CPU_S / ANCHOR_LOOPS
    waves = math.ceil(ANCHOR_LOOPS / 4)  # generation 0 (shared per seed) is inside the first wave's loops
    print(
        f"anchor sweep ({ANCHOR_LOOPS} loops, {per_loop / 60:.1f} min each here): {ANCHOR_CPU_S / 60:.0f} min "
        f"on this machine, ~{per_loop * waves / 60:.0f} min on 4 such nodes ({waves} waves of 4 loops)"
    )
    print(
        f"RESULT sample_linearity={rows[4][0] / (4 * rows[1][0]):.2f} "
        f"train_linearity={rows[4][1] / (4 * rows[1][1]):.2f} "
        f"pack_s_per_1k_docs={rows[4][2] / rows[4][3] * 1000:.3f} "
        f"sweep_1w_s={one:.1f} sweep_2w_s={two:.1f} sweep_speedup={one / two:.2f} "
        f"anchor_4nodes_min={per_loop * waves / 60:.0f}"
    )


if __name__ == "__main__":
    main()

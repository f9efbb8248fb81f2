"""A busy core: training and sampling throughput with another process keeping one core busy, vs idle.

    python bench/busy.py [--steps 12] [--samples 256]

Each configuration runs in a fresh process (OpenMP reads its settings when torch loads):
threads = all CPUs with OpenMP's default wait policy (worker threads spin at every
barrier), the same with OMP_WAIT_POLICY=PASSIVE (they sleep), and one thread. Each is
measured idle and beside `python -c 'while True: pass'`. A busy core should cost about
its share (on 2 cores, at most ~2x); spinning threads that wait for a descheduled peer
cost far more. Last line: RESULT <config>_train=<busy/idle> <config>_sample=<busy/idle> ...
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "spin": {},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "spin10k": {"GOMP_SPINCOUNT": "10000"},
    "spin1k": {"GOMP_SPINCOUNT": "1000"},
    "one-thread": {"SYNTHLOOP_BENCH_THREADS": "1"},
}
ONLY = os.environ.get("SYNTHLOOP_BENCH_CONFIGS")  # e.g. "spin,spin10k": a subset


def worker(steps: int, samples: int) -> dict[str, float]:
    sys.path.insert(0, str(ROOT))
    import torch

    from bench.common import train_params
    from synthloop.config import SELF_LOCAL, GenerateParams, ModelParams
    from synthloop.models import lm
    from synthloop.models.sampler import sample
    from synthloop.models.trainer import train
    from synthloop.resources import available_cpus

    torch.set_num_threads(int(os.environ.get("SYNTHLOOP_BENCH_THREADS", available_cpus())))
    model = lm.build_model(
        ModelParams(source="scratch", arch="gpt2", n_layer=2, n_embd=128, n_head=4, context=256), 4096, 0, 0
    )
    stream = torch.randint(1, 4096, (200_000,), generator=torch.Generator().manual_seed(0))
    cfg = train_params(steps)
    start = time.perf_counter()
    train(model, stream, cfg, 0, torch.device("cpu"))
    train_tps = steps * 32 * 128 / (time.perf_counter() - start)
    gcfg = GenerateParams(
        **SELF_LOCAL,
        num_samples=samples,
        max_new_tokens=64,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        prompt="bos",
        prompt_tokens=1,
        template=None,
        topics=None,
        batch_size=128,
    )
    model.config.eos_token_id = -1  # never stop early: every sample is max_new_tokens long
    start = time.perf_counter()
    ids = sample(model, [[0]] * samples, gcfg, -1, 0, torch.device("cpu"))
    sample_tps = sum(len(r) for r in ids) / (time.perf_counter() - start)
    return {"train_tok_s": train_tps, "sample_tok_s": sample_tps}


def measure(config: str, busy: bool, args) -> dict[str, float]:
    env = {**os.environ, **CONFIGS[config]}
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        time.sleep(0.5 if busy else 0)
        out = subprocess.run(
            [sys.executable, __file__, "--worker", "--steps", str(args.steps), "--samples", str(args.samples)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        if hog:
            hog.kill()
            hog.wait()
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.steps, args.samples)))
        return
    print(f"{'config':<11} {'load':<5} {'train tok/s':>12} {'sample tok/s':>13}")
    result = []
    for config in ONLY.split(",") if ONLY else CONFIGS:
        idle, busy = measure(config, False, args), measure(config, True, args)
        for load, m in (("idle", idle), ("busy", busy)):
            print(f"{config:<11} {load:<5} {m['train_tok_s']:>12.0f} {m['sample_tok_s']:>13.0f}", flush=True)
        result += [
            f"{config}_train={idle['train_tok_s'] / busy['train_tok_s']:.2f}",
            f"{config}_sample={idle['sample_tok_s'] / busy['sample_tok_s']:.2f}",
        ]
    print("RESULT slowdown_idle_over_busy " + " ".join(result))


if __name__ == "__main__":
    main()

"""Tokens/s of synthloop's sampler vs HF `generate`, and the achieved share of the matmul rate.

    python bench/sampler.py [--size small|medium] [--new-tokens 128] [--batches 1,16,64,256]

Both sample with temperature 1 (no top-k/top-p) from the same randomly initialised
GPT-2 for the same number of new tokens. Achieved FLOP/s counts 2 x non-embedding
params x tokens/s, against an fp32 1024^2 matmul measured in this run (`roofline`).
Two more columns say what that figure leaves out, for these small models:
`+head` also counts the vocabulary projection (tied to the embedding, so not a
"non-embedding" parameter, yet at d=128 and 4096 types it is more than half the
FLOPs of a step); `vs mm` is our tokens/s against the matmuls one decode step must
do (per layer QKV, attention out, MLP up and down; then the head) run alone at the
step's own shapes, i.e. the share of a step's time those matmuls take.
Last line: RESULT speedup_vs_hf=<x at batch 64> roofline_fraction=<f at batch 64> (+ the two extras)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import SIZES, matmul_flops, non_embedding_params  # noqa: E402
from synthloop.config import GenerateParams, ModelParams  # noqa: E402
from synthloop.models.lm import build_model  # noqa: E402
from synthloop.models.sampler import forward_factory, hf_generate  # noqa: E402


def tokens_per_s(fn, batch: torch.Tensor, new: int, repeats: int) -> float:
    fn(batch)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn(batch)
    return repeats * batch.size(0) * new / (time.perf_counter() - start)


def step_matmul_seconds(n_layer: int, d: int, vocab: int, b: int, seconds: float = 1.0) -> float:
    """Seconds per decode step of just the matmuls the step must do, at its shapes (batch b)."""
    x, h = torch.randn(b, d), torch.randn(b, 4 * d)
    qkv, out, up, down, head = (
        torch.randn(d, 3 * d),
        torch.randn(d, d),
        torch.randn(d, 4 * d),
        torch.randn(4 * d, d),
        torch.randn(d, vocab),
    )

    def step() -> None:
        for _ in range(n_layer):
            x @ qkv, x @ out, x @ up, h @ down
        x @ head

    for _ in range(10):
        step()
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        reps += 1
    return (time.perf_counter() - start) / reps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=SIZES, default="medium")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--batches", default="1,16,64,256")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    n_layer, n_embd, n_head = SIZES[args.size]
    eos = 1  # random weights rarely emit it: rows run (nearly) the full length in both samplers
    model = build_model(
        ModelParams(source="scratch", arch="gpt2", n_layer=n_layer, n_embd=n_embd, n_head=n_head, context=256),
        vocab_size=4096,
        eos=eos,
        seed=0,
    ).eval()
    cfg = GenerateParams(
        num_samples=1,
        max_new_tokens=args.new_tokens,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        prompt="bos",
        prompt_tokens=1,
        template=None,
        topics=None,
        batch_size=256,
    )
    ours = forward_factory(model, cfg)
    gen = torch.Generator().manual_seed(0)
    peak = matmul_flops()
    params = non_embedding_params(model)
    print(
        f"model {args.size}: {n_layer} layers, d={n_embd}, {params / 1e6:.2f}M non-embedding params; "
        f"fp32 matmul {peak / 1e9:.0f} GFLOP/s; {args.threads} threads; {args.new_tokens} new tokens"
    )
    vocab = model.config.vocab_size
    print(f"{'batch':>6} {'HF tok/s':>10} {'ours tok/s':>11} {'speedup':>8} {'roofline':>9} {'+head':>7} {'vs mm':>7}")
    result = {}
    for b in [int(x) for x in args.batches.split(",")]:
        batch = torch.full((b, 1), eos, dtype=torch.long)
        repeats = max(1, 256 // b)
        hf = tokens_per_s(lambda x: hf_generate(model, x, cfg, eos, gen), batch, args.new_tokens, max(1, repeats // 4))
        us = tokens_per_s(lambda x: ours(x, gen), batch, args.new_tokens, repeats)
        frac = 2 * params * us / peak
        with_head = 2 * (params + vocab * n_embd) * us / peak
        vs_mm = us / (b / step_matmul_seconds(n_layer, n_embd, vocab, b))
        print(f"{b:>6} {hf:>10.0f} {us:>11.0f} {us / hf:>7.2f}x {frac:>9.1%} {with_head:>7.1%} {vs_mm:>7.1%}")
        result[b] = (us / hf, frac, with_head, vs_mm)
    speed, frac, with_head, vs_mm = result.get(64, next(iter(result.values())))
    print(
        f"RESULT speedup_vs_hf={speed:.2f} roofline_fraction={frac:.3f} "
        f"roofline_fraction_with_head={with_head:.3f} step_matmul_fraction={vs_mm:.3f}"
    )


if __name__ == "__main__":
    main()

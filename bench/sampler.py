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

    python bench/sampler.py --model smollm2 [--batches 1,16,64]     (after `make models`)

SmolLM2-135M-Instruct (fp32, dequantized from the GGUF), sampling T=1 from its document
separator: HF `generate` (dynamic cache), HF `generate` with a static cache, and synthloop's
sampler (fast.LlamaDecoder), each for --new-tokens tokens per row; tokens/s counts the tokens
each returns (a row may end at a stop token; the stop here is the last vocabulary id, which
the model rarely samples). The roofline counts 2 x all params x tokens/s (the tied
49k-type head included) against the fp32 matmul measured in this run.
Last line: RESULT speedup_vs_hf=<x, batch 16> roofline_fraction=<f, batch 64>
    static_cache_speedup=<HF static / HF dynamic, batch 16>
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import SIZES, matmul_flops, non_embedding_params  # noqa: E402
from synthloop.config import SELF_LOCAL, GenerateParams, ModelParams  # noqa: E402
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


def pretrained(args) -> None:
    from synthloop.models import source
    from synthloop.models.lm import n_params

    model, hf_tok = source.load(source.resolve(args.model_file, ROOT))
    sep, stop = source.roles(hf_tok, model)[0], model.config.vocab_size - 1
    cfg = GenerateParams(
        **SELF_LOCAL,
        num_samples=1, max_new_tokens=args.new_tokens, temperature=1.0, top_k=0, top_p=1.0, prompt="bos",
        prompt_tokens=1, template=None, topics=None, batch_size=256,
    )  # fmt: skip
    peak, params = matmul_flops(), n_params(model)
    print(
        f"SmolLM2-135M: {params / 1e6:.1f}M params fp32; fp32 matmul {peak / 1e9:.0f} GFLOP/s; "
        f"{args.threads} threads; {args.new_tokens} new tokens, T=1"
    )
    ours = forward_factory(model, cfg, stop)
    gen = torch.Generator().manual_seed(0)
    samplers = {
        "HF": lambda x: hf_generate(model, x, cfg, stop, gen),
        "HF static": lambda x: hf_generate(model, x, cfg, stop, gen, static_cache=True),
        "ours": lambda x: ours(x, gen),
    }
    print(f"{'batch':>6} {'HF tok/s':>9} {'static':>8} {'ours':>8} {'vs HF':>7} {'vs static':>9} {'roofline':>9}")
    result = {}
    for b in [int(x) for x in args.batches.split(",")]:
        batch = torch.full((b, 1), sep, dtype=torch.long)
        rate = {}
        for name, fn in samplers.items():
            fn(batch[:, :1][: min(b, 4)])  # warm-up (allocations, oneDNN weight packing done at start)
            start = time.perf_counter()
            rows = fn(batch)
            rate[name] = sum(len(r) for r in rows) / (time.perf_counter() - start)
        frac = 2 * params * rate["ours"] / peak
        print(
            f"{b:>6} {rate['HF']:>9.0f} {rate['HF static']:>8.0f} {rate['ours']:>8.0f} "
            f"{rate['ours'] / rate['HF']:>6.2f}x {rate['ours'] / rate['HF static']:>8.2f}x {frac:>9.1%}"
        )
        result[b] = (rate["ours"] / rate["HF"], frac, rate["HF static"] / rate["HF"])
    again = matmul_flops()  # a noisy VM: judge against the higher of the two measurements
    if again > peak:
        print(f"fp32 matmul measured again: {again / 1e9:.0f} GFLOP/s; roofline fractions scaled by {peak / again:.2f}")
        result = {b: (x, f * peak / again, st) for b, (x, f, st) in result.items()}
    at16, at64 = result.get(16, next(iter(result.values()))), result.get(64, next(iter(result.values())))
    print(f"RESULT speedup_vs_hf={at16[0]:.2f} roofline_fraction={at64[1]:.3f} static_cache_speedup={at16[2]:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=SIZES, default="medium")
    ap.add_argument("--model", choices=("scratch", "smollm2"), default="scratch")
    ap.add_argument("--model-file", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--batches", default=None, help="batch sizes (1,16,64,256; smollm2: 1,16,64)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.model == "smollm2":
        args.batches = args.batches or "1,16,64"
        return pretrained(args)
    args.batches = args.batches or "1,16,64,256"
    n_layer, n_embd, n_head = SIZES[args.size]
    eos = 1  # random weights rarely emit it: rows run (nearly) the full length in both samplers
    model = build_model(
        ModelParams(source="scratch", arch="gpt2", n_layer=n_layer, n_embd=n_embd, n_head=n_head, context=256),
        vocab_size=4096,
        eos=eos,
        seed=0,
    ).eval()
    cfg = GenerateParams(
        **SELF_LOCAL,
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

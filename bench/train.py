"""Training throughput: synthloop's trainer (fp32, bf16) vs a plain fp32 torch loop, against the matmul roofline.

    python bench/train.py [--steps 20] [--size small|medium]
    python bench/train.py --model smollm2 [--steps 6]     (after `make models`)

All runs train the same model from the same init on the same real tokens (the
default corpus, BPE 4096) with the same batches. Achieved FLOP/s counts
6 x params x tokens/s, against a matmul of the run's dtype measured in this run.
Last line: RESULT roofline_fraction=<best synthloop run> speedup_vs_plain=<x> bf16_loss_delta=<d>

--model smollm2: SmolLM2-135M (fp32, dequantized from the GGUF) fine-tuned on the fairy tales with
its own tokenizer, 8 x 256 tokens per step: full fine-tuning against LoRA (rank 8 on every
projection, as profiles/smollm2.yaml), side by side. Full's FLOP/s counts 6 x params x tokens/s
(the 49k-type head included). Last line: RESULT roofline_fraction=<full> lora_speedup=<lora/full tok/s>
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import SIZES, matmul_flops  # noqa: E402
from synthloop.config import ModelParams, TrainParams  # noqa: E402
from synthloop.models import lm  # noqa: E402
from synthloop.models.trainer import train  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpora" / "fairytales" / "train.txt"


def plain_fp32(model: torch.nn.Module, stream: torch.Tensor, cfg: TrainParams, seed: int) -> float:
    """The baseline: the textbook loop (forward, loss, backward, AdamW), nothing else."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    offsets = torch.arange(cfg.block_size + 1)
    for _ in range(cfg.steps):
        starts = torch.randint(0, len(stream) - cfg.block_size - 1, (cfg.batch_size,), generator=gen)
        chunk = stream[starts[:, None] + offsets]
        logits = model(input_ids=chunk[:, :-1]).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), chunk[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss.item()


def pretrained(args) -> None:
    import copy

    from synthloop.config import load_params
    from synthloop.models import source
    from synthloop.models.lora import add_adapters

    src = source.resolve(args.model_file, ROOT)
    base, hf = source.load(src)
    sep, stops = source.roles(hf, base)
    tok = lm.Tok(hf.backend_tokenizer, sep, stops)
    docs = CORPUS.read_text(encoding="utf-8").split("\n\n")[:300]
    stream = lm.pack(tok, docs)
    profile = load_params(ROOT / "profiles" / "smollm2.yaml").train
    cfg = profile.model_copy(update={"steps": args.steps, "warmup_steps": 1, "batch_size": 8, "micro_batch": 8,
                                     "block_size": 256, "checkpoint_every": 0})  # fmt: skip
    n, peak, tokens = lm.n_params(base), matmul_flops(torch.float32), args.steps * 8 * 256
    print(f"SmolLM2-135M: {n / 1e6:.1f}M params fp32; {args.steps} steps x 8 x 256 tokens; {args.threads} threads")
    print(f"matmul: fp32 {peak / 1e9:.0f} GFLOP/s")
    print(f"{'run':<12} {'tok/s':>8} {'GFLOP/s':>8} {'of peak':>8} {'trained':>10} {'loss':>7}")
    rows = {}
    for method in ("full", "lora"):
        model = copy.deepcopy(base)
        if method == "lora":
            model = add_adapters(model, cfg.model_copy(update={"method": "lora"}))
        trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
        start = time.perf_counter()
        loss = train(model, stream, cfg, seed=0, device=torch.device("cpu"))["train_loss"]
        rate = tokens / (time.perf_counter() - start)
        rows[method] = rate
        flops = 6 * n * rate
        print(f"{method:<12} {rate:>8.0f} {flops / 1e9:>8.1f} {flops / peak:>8.1%} {trained / 1e6:>9.2f}M {loss:>7.3f}")
        del model
    again = matmul_flops(torch.float32)  # a noisy VM: judge against the higher of the two measurements
    if again > peak:
        print(f"fp32 matmul measured again: {again / 1e9:.0f} GFLOP/s (used for the RESULT)")
    peak = max(peak, again)
    print(f"RESULT roofline_fraction={6 * n * rows['full'] / peak:.3f} lora_speedup={rows['lora'] / rows['full']:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps per run (20; smollm2: 6)")
    ap.add_argument("--size", choices=SIZES, default="small")
    ap.add_argument("--model", choices=("scratch", "smollm2"), default="scratch")
    ap.add_argument("--model-file", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--force-bf16", action="store_true", help="train in bf16 even where its matmul is slow")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.model == "smollm2":
        args.steps = args.steps or 6
        return pretrained(args)
    args.steps = args.steps or 20
    docs = CORPUS.read_text(encoding="utf-8").split("\n\n")[:600]
    tok = lm.train_tokenizer(docs, 4096)
    stream = lm.pack(tok, docs)
    n_layer, n_embd, n_head = SIZES[args.size]
    mcfg = ModelParams(source="scratch", arch="gpt2", n_layer=n_layer, n_embd=n_embd, n_head=n_head, context=256)
    fresh = lambda: lm.build_model(mcfg, tok.vocab_size, lm.eos_id(tok), seed=0)  # noqa: E731
    n = lm.n_params(fresh())
    tokens = args.steps * 32 * 128
    peaks = {"fp32": matmul_flops(torch.float32), "bf16": matmul_flops(torch.bfloat16)}
    print(f"model {args.size}: {n / 1e6:.2f}M params; {args.steps} steps x 32 x 128 tokens; {args.threads} threads")
    print(f"matmul: fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s")
    print(f"{'run':<18} {'tok/s':>8} {'GFLOP/s':>8} {'of peak':>8} {'loss':>7}")
    rows = {}
    runs = ["plain fp32", "synthloop fp32", "synthloop bf16"]
    if peaks["bf16"] < 0.5 * peaks["fp32"] and not args.force_bf16:
        print("bf16 matmul is slower than fp32 here (no bf16 units): skipping the bf16 run (--force-bf16 runs it)")
        runs.pop()
    for name in runs:
        model = fresh()
        start = time.perf_counter()
        if name == "plain fp32":
            loss = plain_fp32(
                model,
                stream,
                TrainParams(
                    init="scratch",
                    method="full",
                    steps0=None,
                    lora_rank=8,
                    lora_alpha=16.0,
                    lora_dropout=0.0,
                    lora_targets=["q_proj"],
                    steps=args.steps,
                    batch_size=32,
                    micro_batch=32,
                    block_size=128,
                    lr=3e-3,
                    warmup_steps=0,
                    weight_decay=0.0,
                    precision="fp32",
                ),
                seed=0,
            )
        else:
            precision = name.split()[1]
            cfg = TrainParams(
                init="scratch",
                method="full",
                steps0=None,
                lora_rank=8,
                lora_alpha=16.0,
                lora_dropout=0.0,
                lora_targets=["q_proj"],
                steps=args.steps,
                batch_size=32,
                micro_batch=32,
                block_size=128,
                lr=3e-3,
                warmup_steps=max(1, args.steps // 10),
                weight_decay=0.1,
                precision=precision,
            )
            loss = train(model, stream, cfg, seed=0, device=torch.device("cpu"))["train_loss"]
        rate = tokens / (time.perf_counter() - start)
        flops = 6 * n * rate
        peak = peaks["bf16" if name.endswith("bf16") else "fp32"]
        rows[name] = (rate, flops / peak, loss)
        print(f"{name:<18} {rate:>8.0f} {flops / 1e9:>8.1f} {flops / peak:>8.1%} {loss:>7.3f}")
    best = max((k for k in rows if k.startswith("synthloop")), key=lambda k: rows[k][0])
    print(f"best synthloop setting here: {best}")
    delta = rows["synthloop bf16"][2] - rows["synthloop fp32"][2] if "synthloop bf16" in rows else float("nan")
    print(
        f"RESULT roofline_fraction={rows[best][1]:.3f} speedup_vs_plain={rows[best][0] / rows['plain fp32'][0]:.2f} "
        f"bf16_loss_delta={delta:.3f}"
    )


if __name__ == "__main__":
    main()

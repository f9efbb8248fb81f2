"""Shared pieces of the benchmarks: the matmul roofline and model sizes, measured in the same run."""

from __future__ import annotations

import time

import torch


def matmul_flops(dtype: torch.dtype = torch.float32, n: int = 1024, seconds: float = 2.0) -> float:
    """Sustained FLOP/s of an n x n matmul in `dtype` on this machine, now."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        reps += 1
    return 2 * n**3 * reps / (time.perf_counter() - start)


def non_embedding_params(model: torch.nn.Module) -> int:
    emb = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    return sum(p.numel() for p in model.parameters() if id(p) not in emb)


SIZES = {  # name: (n_layer, n_embd, n_head)
    "small": (2, 128, 4),  # the default profile
    "medium": (4, 256, 4),  # STACK-NOTES' reference size
}


def train_params(steps: int):
    """The benchmarks' training settings: 32 x 128-token sequences per step, the default profile's lr."""
    from synthloop.config import TrainParams

    return TrainParams(
        init="scratch",
        method="full",
        steps0=None,
        lora_rank=8,
        lora_alpha=16.0,
        lora_dropout=0.0,
        lora_targets=["q_proj"],
        steps=steps,
        batch_size=32,
        micro_batch=32,
        block_size=128,
        lr=3e-3,
        warmup_steps=1,
        weight_decay=0.1,
        precision="fp32",
    )

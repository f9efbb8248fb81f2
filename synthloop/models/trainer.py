"""One readable training loop (nanoGPT style): packed sequences, AdamW, warmup + cosine."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..config import TrainParams
from ..io import DataError


def lr_at(step: int, cfg: TrainParams) -> float:
    """Linear warmup to cfg.lr, then cosine decay to cfg.lr / 10 at the last step."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps - 1)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(
    model: torch.nn.Module,
    stream: torch.Tensor,
    cfg: TrainParams,
    seed: int,
    device: torch.device,
    on_log: Callable[[int, float], None] | None = None,
    desc: str = "training",
) -> dict[str, float]:
    """Train in place on random windows of a packed token stream; returns summary numbers."""
    block = cfg.block_size
    if len(stream) < block + 2:
        raise DataError(
            f"training set has {len(stream)} tokens, fewer than train.block_size + 2 "
            f"({block + 2}); add documents or lower train.block_size"
        )
    gen = torch.Generator().manual_seed(seed)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.95),
        fused=True,
    )
    offsets = torch.arange(block + 1)
    model.train()
    losses: list[float] = []
    bar = tqdm(range(cfg.steps), desc=desc, unit="step", leave=False, disable=None)
    for step in bar:
        starts = torch.randint(0, len(stream) - block - 1, (cfg.batch_size,), generator=gen)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss = 0.0
        for micro in starts.split(cfg.micro_batch):  # gradient accumulation
            chunk = stream[micro[:, None] + offsets].to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
                logits = model(input_ids=chunk[:, :-1]).logits
            part = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), chunk[:, 1:].reshape(-1))
            (part * len(micro) / cfg.batch_size).backward()
            loss += part.item() * len(micro) / cfg.batch_size
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss)
        if step % 10 == 0 or step == cfg.steps - 1:
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if on_log:
                on_log(step, losses[-1])
    model.eval()
    tail = losses[-max(1, len(losses) // 10) :]
    return {"train_loss": sum(tail) / len(tail), "train_tokens": cfg.steps * cfg.batch_size * block}

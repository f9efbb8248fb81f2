"""One readable training loop (nanoGPT style): packed sequences, AdamW, warmup + cosine."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..config import TrainParams
from ..io import DataError, atomic_path
from ..progress import Progress

log = logging.getLogger("synthloop")


def lr_at(step: int, cfg: TrainParams) -> float:
    """Linear warmup to cfg.lr, then cosine decay to cfg.lr / 10 at the last step."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps - 1)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclass(frozen=True)
class Checkpoints:
    """Where and how often training saves its state; `key` names its inputs (a checkpoint of other
    inputs is ignored); `after_save(step)` runs once a checkpoint is on disk (a kill point for tests)."""

    path: Path
    key: str
    every: int
    after_save: Callable[[int], None] | None = None

    def save(self, step: int, model, opt, gen: torch.Generator, losses: list[float]) -> None:
        state = {
            "key": self.key,
            "step": step,
            "model": model.state_dict(),
            "opt": opt.state_dict(),
            "rng": gen.get_state(),
            "losses": list(losses),
        }
        with atomic_path(self.path) as tmp:
            torch.save(state, tmp)
        if self.after_save:
            self.after_save(step)

    def restore(self, model, opt, gen: torch.Generator, losses: list[float]) -> int:
        """Load the checkpoint of these inputs into model, optimizer, generator and losses; the next step."""
        if not self.path.is_file():
            return 0
        try:
            state = torch.load(self.path, weights_only=True)  # tensors and plain containers only: no pickled code
        except Exception as exc:  # a damaged file: start over rather than trust it
            log.info("%s: unreadable checkpoint (%s); training from the start", self.path, str(exc)[:80])
            return 0
        if state.get("key") != self.key:
            log.info("%s: a checkpoint of other inputs; training from the start", self.path)
            return 0
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["rng"])
        losses.extend(state["losses"])
        log.info("%s: resumed from step %d", self.path, state["step"])
        return int(state["step"])


def train(
    model: torch.nn.Module,
    stream: torch.Tensor,
    cfg: TrainParams,
    seed: int,
    device: torch.device,
    on_log: Callable[[int, float], None] | None = None,
    desc: str = "training",
    ckpt: Checkpoints | None = None,
    skip: torch.Tensor | None = None,
) -> dict[str, float]:
    """Train in place on random windows of a packed token stream; returns summary numbers.
    `skip` (bool, the stream's length) marks tokens that are never a target (lm.pack_open).

    With `ckpt`, the state (weights, optimizer, the batch generator, the losses so far) is saved
    every `ckpt.every` steps, and a run that finds a checkpoint of the same inputs resumes from it:
    the final weights equal an uninterrupted run's (same machine and thread count).

    Inside a torch.distributed process group (synthloop.models.ddp), each of the N ranks draws
    the same global batch and trains on its 1/N share through DistributedDataParallel: gradients
    average to the global batch's, so the steps equal one process's up to float rounding. Rank 0
    alone saves checkpoints, reports progress and calls `on_log`."""
    block = cfg.block_size
    world, rank = _group()
    if cfg.steps == 0:  # a pretrained model kept as it is
        model.eval()
        return {"train_tokens": 0}
    if len(stream) < block + 2:
        raise DataError(
            f"training set has {len(stream)} tokens, fewer than train.block_size + 2 "
            f"({block + 2}); add documents or lower train.block_size"
        )
    gen = torch.Generator().manual_seed(seed)
    trained = [p for p in model.parameters() if p.requires_grad]  # LoRA: the adapters only
    decay = [p for p in trained if p.dim() >= 2]
    no_decay = [p for p in trained if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.95),
        fused=True,
    )
    offsets = torch.arange(block + 1)
    model.train()
    losses: list[float] = []
    first = ckpt.restore(model, opt, gen, losses) if ckpt else 0
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model)
    bar = Progress(cfg.steps, desc, unit="step", initial=first, quiet=rank > 0)
    tokens_per_step, began = cfg.batch_size * block, time.perf_counter()
    for step in range(first, cfg.steps):
        starts = torch.randint(0, len(stream) - block - 1, (cfg.batch_size,), generator=gen)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss = 0.0
        micros = starts.chunk(world)[rank].split(cfg.micro_batch)  # this rank's share, in passes
        for j, micro in enumerate(micros):  # gradient accumulation; DDP syncs on the last pass only
            sync = world == 1 or j == len(micros) - 1
            with contextlib.nullcontext() if sync else net.no_sync():
                at = micro[:, None] + offsets
                chunk = stream[at].to(device)
                targets = chunk[:, 1:] if skip is None else chunk[:, 1:].masked_fill(skip[at][:, 1:].to(device), -100)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
                    logits = net(input_ids=chunk[:, :-1]).logits
                part = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1))
                (part * len(micro) * world / cfg.batch_size).backward()  # DDP divides by world: the global mean
            loss += part.item() * len(micro) / cfg.batch_size
        if world > 1:
            loss = _sum(loss)
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss)
        if rank == 0 and ckpt and ckpt.every and (step + 1) % ckpt.every == 0 and step + 1 < cfg.steps:
            ckpt.save(step + 1, model, opt, gen, losses)
        rate = tokens_per_step * (step + 1 - first) / max(time.perf_counter() - began, 1e-9)
        bar.update(1, loss=f"{loss:.3f}", tok_s=f"{rate:.0f}")
        if rank == 0 and on_log and (step % 10 == 0 or step == cfg.steps - 1):
            on_log(step, losses[-1])
    bar.close()
    model.eval()
    tail = losses[-max(1, len(losses) // 10) :]
    return {"train_loss": sum(tail) / len(tail), "train_tokens": cfg.steps * cfg.batch_size * block}


def _group() -> tuple[int, int]:
    """(world size, rank) of the torch.distributed group this process is in; (1, 0) outside one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def _sum(value: float) -> float:
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item())

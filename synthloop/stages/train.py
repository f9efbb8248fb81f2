"""train: fit generation k's model on its training set.

Where training starts (`train.init`): new random weights (scratch), the previous generation's
model (continue), or the pretrained base in data/base (base: every generation, Shumailov et
al.'s protocol; generation 0 of a pretrained source always starts there). How (`train.method`):
every weight, or LoRA adapters merged into the saved model, the adapter kept in model/adapter.
"""

from __future__ import annotations

import time

from .. import faults, io
from ..keys import content_key
from ..models import lm
from ..models.trainer import Checkpoints, train
from .context import StageContext
from .table import stage_id

TRAIN_STATS = ("train_steps", "train_tokens", "train_stream_tokens", "train_epochs", "train_loss")


def start(ctx: StageContext, tok: lm.Tok, device):
    """(model, what it is) where generation k's training starts; `what` keys its checkpoints."""
    p, lay, k = ctx.params, ctx.layout, ctx.gen
    if p.train.init == "continue" and k > 0:
        return lm.load_model(lay.model(k - 1), device), io.weights_md5(lay.model(k - 1))
    if p.pretrained:  # generation 0, or init: base
        return lm.load_model(lay.base, device), io.weights_md5(lay.base)
    if p.train.init == "base" and k > 0:  # a scratch loop's base: generation 0, trained on real data alone
        return lm.load_model(lay.model(0), device), io.weights_md5(lay.model(0))
    model = lm.build_model(p.model, tok.vocab_size, tok.sep, ctx.seed("init")).to(device)
    return model, ctx.seed("init")


def run(ctx: StageContext) -> dict[str, float]:
    p, k = ctx.params, ctx.gen
    if p.compute.train_processes > 1 and p.train_at(k).steps:
        from ..models import ddp

        return ddp.launch(ctx)  # torchrun: compute.train_processes ranks each run `fit`
    return fit(ctx)


def fit(ctx: StageContext, world: int = 1, rank: int = 0) -> dict[str, float]:
    """Train generation k and save its model (rank 0 of a data-parallel group saves; the rest only train)."""
    p, lay, k = ctx.params, ctx.layout, ctx.gen
    device = lm.setup_torch(p.compute)
    tok = lm.load_tokenizer(lay.tokenizer)
    rows = io.read_rows(lay.train_set(k))
    stream, skip = lm.pack_open(tok, [r["text"] for r in rows], [bool(r.get("truncated")) for r in rows])
    cfg = p.train_at(k, len(stream))
    model, start_from = start(ctx, tok, device)
    n_params = lm.n_params(model)
    if cfg.method == "lora" and cfg.steps:
        from ..models.lora import add_adapters

        model = add_adapters(model, cfg)
    sid = stage_id("train", k)
    # everything that decides the weights: a checkpoint of other inputs is never resumed
    key = content_key(
        io.md5_file(lay.train_set(k)),
        io.md5_file(lay.tokenizer),
        start_from,
        ctx.seed("batches"),
        p.model.model_dump(),
        cfg.model_dump(exclude={"checkpoint_every"}),
        p.compute.threads,
        world,
    )
    ckpt = Checkpoints(
        lay.train_checkpoint(k), key, cfg.checkpoint_every, after_save=lambda step: faults.point(f"ckpt:{sid}")
    )
    start_time = time.perf_counter()
    stats = train(
        model,
        stream,
        cfg,
        ctx.seed("batches"),
        device,
        on_log=lambda step, loss: ctx.log_metric("train_loss", loss, step),
        desc=f"gen {k}: training",
        ckpt=ckpt,
        skip=skip,
    )
    seconds = time.perf_counter() - start_time
    faults.point(f"mid:{sid}")
    stats = {
        **stats,
        "train_stream_tokens": len(stream),
        "train_steps": cfg.steps,
        "train_epochs": stats["train_tokens"] / max(1, len(stream)),
        "train_seconds": seconds,
        "train_tokens_per_s": stats["train_tokens"] / max(seconds, 1e-9),
        "n_params": float(n_params),
    }
    if rank > 0:
        return stats
    # deterministic numbers only (DVC records this file): the compute each generation spent
    io.write_json(lay.train_stats(k), {key: stats[key] for key in TRAIN_STATS if key in stats})
    extra = None
    if cfg.method == "lora" and cfg.steps:
        from ..models.lora import merge

        model, extra = merge(model)
    lm.save_model(model.cpu(), lay.tokenizer, lay.model(k), extra=extra)
    io.remove(lay.train_checkpoint(k))  # the model now holds what it held
    return stats

"""train: fit generation k's model on its training set (from scratch or continued)."""

from __future__ import annotations

import time

from .. import faults, io
from ..keys import content_key
from ..models import lm
from ..models.trainer import Checkpoints, train
from .context import StageContext
from .table import stage_id


def run(ctx: StageContext) -> dict[str, float]:
    p, lay, k = ctx.params, ctx.layout, ctx.gen
    device = lm.setup_torch(p.compute)
    tok = lm.load_tokenizer(lay.tokenizer)
    stream = lm.pack(tok, [r["text"] for r in io.read_rows(lay.train_set(k))])
    if p.train.init == "continue" and k > 0:
        model, start_from = lm.load_model(lay.model(k - 1), device), io.weights_md5(lay.model(k - 1))
    else:
        model = lm.build_model(p.model, tok.get_vocab_size(), lm.eos_id(tok), ctx.seed("init")).to(device)
        start_from = ctx.seed("init")
    sid = stage_id("train", k)
    # everything that decides the weights: a checkpoint of other inputs is never resumed
    key = content_key(
        io.md5_file(lay.train_set(k)),
        io.md5_file(lay.tokenizer),
        start_from,
        ctx.seed("batches"),
        p.model.model_dump(),
        p.train.model_dump(exclude={"checkpoint_every"}),
        p.compute.threads,
    )
    ckpt = Checkpoints(
        lay.train_checkpoint(k), key, p.train.checkpoint_every, after_save=lambda step: faults.point(f"ckpt:{sid}")
    )
    start = time.perf_counter()
    stats = train(
        model,
        stream,
        p.train,
        ctx.seed("batches"),
        device,
        on_log=lambda step, loss: ctx.log_metric("train_loss", loss, step),
        desc=f"gen {k}: training",
        ckpt=ckpt,
    )
    seconds = time.perf_counter() - start
    faults.point(f"mid:{sid}")
    lm.save_model(model.cpu(), lay.tokenizer, lay.model(k))
    io.remove(lay.train_checkpoint(k))  # the model now holds what it held
    return {
        **stats,
        "train_stream_tokens": len(stream),
        "train_seconds": seconds,
        "train_tokens_per_s": stats["train_tokens"] / max(seconds, 1e-9),
        "n_params": float(lm.n_params(model)),
    }

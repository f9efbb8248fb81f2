"""train: fit generation k's model on its training set (from scratch or continued)."""

from __future__ import annotations

import time

from .. import faults, io
from ..models import lm
from ..models.trainer import train
from .context import StageContext
from .table import stage_id


def run(ctx: StageContext) -> dict[str, float]:
    p, lay, k = ctx.params, ctx.layout, ctx.gen
    device = lm.setup_torch(p.compute)
    tok = lm.load_tokenizer(lay.tokenizer)
    stream = lm.pack(tok, [r["text"] for r in io.read_rows(lay.train_set(k))])
    if p.train.init == "continue" and k > 0:
        model = lm.load_model(lay.model(k - 1), device)
    else:
        model = lm.build_model(p.model, tok.get_vocab_size(), lm.eos_id(tok), ctx.seed("init")).to(device)
    start = time.perf_counter()
    stats = train(
        model,
        stream,
        p.train,
        ctx.seed("batches"),
        device,
        on_log=lambda step, loss: ctx.log_metric("train_loss", loss, step),
        desc=f"gen {k}: training",
    )
    seconds = time.perf_counter() - start
    faults.point("mid:" + stage_id("train", k))
    lm.save_model(model.cpu(), lay.tokenizer, lay.model(k))
    return {
        **stats,
        "train_stream_tokens": len(stream),
        "train_seconds": seconds,
        "train_tokens_per_s": stats["train_tokens"] / max(seconds, 1e-9),
        "n_params": float(lm.n_params(model)),
    }

"""evaluate: real-data perplexity and bits per byte, and the diversity, tails and bias of fresh samples.

Every metric is defined in docs/metrics.md. The samples are `evaluate.num_samples`
unconditional samples at T=1 without truncation (generate's length and batch):
same count and length each generation.
"""

from __future__ import annotations

import math

from .. import faults, io
from ..config import GenerateParams
from ..metrics import suite
from ..metrics.samples import sample_metrics
from ..models import lm
from ..models.sampler import sample
from .context import StageContext
from .table import stage_id

PPL_BINS = (1.0, 1e5, 40)  # log-spaced histogram of per-sample reference perplexity


def run(ctx: StageContext) -> dict[str, float]:
    p, lay, k = ctx.params, ctx.layout, ctx.gen
    device = lm.setup_torch(p.compute)
    tok = lm.load_tokenizer(lay.tokenizer)
    eos = lm.eos_id(tok)
    model = lm.load_model(lay.model(k), device)
    test = [r["text"] for r in io.read_rows(lay.real_test)]
    stream = lm.pack(tok, test)[: p.evaluate.max_test_tokens + 1]
    ce, entropy, n_tokens = lm.stream_ce(model, stream, p.train.block_size, p.generate.batch_size, device)
    scored_text = lm.scored_text(tok, stream, n_tokens)
    # plain ancestral sampling (T=1, no truncation): the model's own distribution, whatever the
    # generate stage's sampling bias, so arms that differ only in sampling share generation 0
    cfg: GenerateParams = p.generate.model_copy(
        update={"num_samples": p.evaluate.num_samples, "temperature": 1.0, "top_k": 0, "top_p": 1.0}
    )
    ids = sample(
        model,
        [[eos]] * cfg.num_samples,
        cfg,
        tok.stops,
        ctx.seed("eval-samples"),
        device,
        desc=f"gen {k}: eval samples",
    )
    texts = lm.decode(tok, ids)
    reference = model if k == 0 else lm.load_model(lay.model(0), device)  # frozen, real data only
    scored = lm.sequence_nll(reference, ids, eos, cfg.batch_size, device)
    ref_ppl = [math.exp(s / n) for s, n in scored if n > 0]  # empty samples have no perplexity
    metrics = {
        "test_ce": ce,
        "test_ppl": math.exp(ce),
        "test_bpb": lm.bits_per_unit(ce, n_tokens, len(scored_text.encode("utf-8"))),
        "test_bpc": lm.bits_per_unit(ce, n_tokens, len(scored_text)),
        "test_entropy": entropy,
        "test_tokens": n_tokens,
        **sample_metrics(texts, test, [r["text"] for r in io.read_rows(lay.real_train)]),
        **{f"ref_ppl_{q}": v for q, v in suite.quantiles(ref_ppl).items()},
        "ref_ppl_mean": sum(ref_ppl) / max(1, len(ref_ppl)),
    }
    io.write_json(lay.metrics(k), metrics)
    faults.point("mid:" + stage_id("evaluate", k))  # metrics written, histogram and samples not yet
    io.write_json(
        lay.ref_hist(k), {"edges": suite.log_bin_edges(*PPL_BINS), "counts": suite.log_histogram(ref_ppl, *PPL_BINS)}
    )
    io.write_rows(lay.samples(k), ({"generation": k, "text": t} for t in texts[: p.evaluate.keep_samples]))
    return metrics

"""evaluate: real-data perplexity and bits per byte, and the diversity, tails and bias of fresh samples.

Every metric is defined in docs/metrics.md. The test split is scored whole (or its first
`evaluate.max_test_tokens`) in non-overlapping windows of `evaluate.block_size`, the evaluation's own.
The samples are rounds of `evaluate.num_samples` unconditional samples at T=1 without truncation
(generate's length and batch), drawn until they hold `evaluate.metric_words` words (at most
MAX_ROUNDS rounds); the pooled sample metrics are computed on that word budget.
"""

from __future__ import annotations

import math

from .. import faults, io
from ..config import GenerateParams
from ..metrics import suite
from ..metrics.samples import sample_metrics
from ..metrics.text import words
from ..models import lm
from ..models.sampler import sample
from .context import StageContext
from .table import stage_id

PPL_BINS = (1.0, 1e5, 40)  # log-spaced histogram of per-sample reference perplexity
MAX_ROUNDS = 8  # rounds of samples drawn at most to fill the word budget (a model that writes nothing)


def run(ctx: StageContext) -> dict[str, float]:
    p, lay, k = ctx.params, ctx.layout, ctx.gen
    device = lm.setup_torch(p.compute)
    tok = lm.load_tokenizer(lay.tokenizer)
    eos = lm.eos_id(tok)
    model = lm.load_model(lay.model(k), device)
    test = [r["text"] for r in io.read_rows(lay.real_test)]
    stream = lm.pack(tok, test)
    if p.evaluate.max_test_tokens:
        stream = stream[: p.evaluate.max_test_tokens + 1]
    window = p.evaluate.block_size
    if window > lm.context_length(model):
        raise io.DataError(
            f"evaluate.block_size ({window}) exceeds the model's context ({lm.context_length(model)}); lower it"
        )
    ce, entropy, n_tokens = lm.stream_ce(model, stream, window, p.generate.batch_size, device)
    scored_text = lm.scored_text(tok, stream, n_tokens)
    # plain ancestral sampling (T=1, no truncation): the model's own distribution, whatever the
    # generate stage's sampling bias, so arms that differ only in sampling share generation 0
    cfg: GenerateParams = p.generate.model_copy(
        update={"num_samples": p.evaluate.num_samples, "temperature": 1.0, "top_k": 0, "top_p": 1.0}
    )
    ids: list[list[int]] = []
    texts: list[str] = []
    for r in range(MAX_ROUNDS):  # round 0 alone when the budget is 0 (every word of one round)
        more = sample(
            model,
            [[eos]] * cfg.num_samples,
            cfg,
            tok.stops,
            ctx.seed("eval-samples", *([r] if r else [])),
            device,
            desc=f"gen {k}: eval samples" + (f" (round {r + 1})" if r else ""),
        )
        ids += more
        texts += lm.decode(tok, more)
        if sum(len(words(t)) for t in texts) >= p.evaluate.metric_words:
            break
    reference = model if k == 0 else lm.load_model(lay.model(0), device)  # frozen, real data only
    scored = lm.sequence_nll(reference, ids, eos, cfg.batch_size, device)
    ref_ppl = [math.exp(s / n) for s, n in scored if n > 0]  # empty samples have no perplexity
    metrics = {
        "test_ce": ce,
        "test_ppl": math.exp(ce),
        "test_bpb": lm.bits_per_unit(ce, n_tokens, len(scored_text.encode("utf-8"))),
        "test_bpc": lm.bits_per_unit(ce, n_tokens, len(scored_text)),
        "test_entropy": entropy,
        "test_ce_gap": ce - entropy,  # about 0 for a calibrated model; grows as the model drifts from real text
        "test_tokens": n_tokens,
        "eval_samples": len(texts),
        **sample_metrics(texts, test, [r["text"] for r in io.read_rows(lay.real_train)], p.evaluate.metric_words),
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

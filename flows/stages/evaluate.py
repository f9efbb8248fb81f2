"""evaluate: real-data perplexity and the diversity of fresh samples."""

from __future__ import annotations

import math

from .. import io
from ..config import GenerateParams
from ..metrics.text import distinct_n, unigram_counts, unigram_kl, words
from ..models import lm
from ..models.sampler import sample
from .context import StageContext


def run(ctx: StageContext) -> dict[str, float]:
    p, lay, k = ctx.params, ctx.layout, ctx.gen
    device = lm.setup_torch(p.compute)
    tok = lm.load_tokenizer(lay.tokenizer)
    model = lm.load_model(lay.model(k), device)
    test = [r["text"] for r in io.read_rows(lay.real_test)]
    stream = lm.pack(tok, test)[: p.evaluate.max_test_tokens + 1]
    ce, n_tokens = lm.stream_ce(model, stream, p.train.block_size, p.generate.batch_size, device)
    cfg: GenerateParams = p.generate.model_copy(update={"num_samples": p.evaluate.num_samples})
    eos = lm.eos_id(tok)
    texts = lm.decode(tok, sample(model, [[eos]] * cfg.num_samples, cfg, eos, ctx.seed("eval-samples"),
                                  device, desc=f"gen {k}: eval samples"))
    metrics = {"test_ce": ce, "test_ppl": math.exp(ce), "test_tokens": n_tokens,
               "distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2),
               "unigram_kl": unigram_kl(unigram_counts(test), unigram_counts(texts)),
               "sample_words_mean": sum(len(words(t)) for t in texts) / len(texts),
               "empty_share": sum(not t.strip() for t in texts) / len(texts)}
    io.write_json(lay.metrics(k), metrics)
    io.write_rows(lay.samples(k), ({"generation": k, "text": t} for t in texts[: p.evaluate.keep_samples]))
    return metrics

"""evaluate: real-data perplexity, and the diversity, tails and bias of fresh samples.

Every metric is defined in docs/metrics.md. The samples are `evaluate.num_samples`
unconditional samples at T=1 without truncation (generate's length and batch):
same count and length each generation.
"""

from __future__ import annotations

import math

from .. import faults, io
from ..config import GenerateParams
from ..metrics import bias, suite
from ..metrics.text import distinct_n, unigram_counts, unigram_kl, words
from ..models import lm
from ..models.sampler import sample
from .context import StageContext
from .table import stage_id

PPL_BINS = (1.0, 1e5, 40)  # log-spaced histogram of per-sample reference perplexity


def sample_metrics(texts: list[str], real_test: list[str], real_train: list[str]) -> dict[str, float]:
    """Diversity, divergence, tail and bias metrics of samples against real text (pure)."""
    test_counts, sample_counts = unigram_counts(real_test), unigram_counts(texts)
    train_counts = unigram_counts(real_train)
    rare = suite.rare_types(train_counts)
    n_words = sum(sample_counts.values())
    real_slice = _first_words(real_test, n_words)  # real text of the samples' size, for scale
    return {
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "distinct_3": distinct_n(texts, 3),
        "ttr": suite.type_token_ratio(texts),
        "self_bleu": suite.self_bleu(texts),
        "unigram_kl": unigram_kl(test_counts, sample_counts),
        "unigram_js": suite.unigram_js(test_counts, sample_counts),
        "rare_coverage": suite.rare_coverage(rare, texts),
        "rare_coverage_real": suite.rare_coverage(rare, real_slice),
        "zipf_slope": suite.zipf_slope(sample_counts),
        **bias.bias_metrics(real_train, texts, bias.character_names(real_train)),
        "sample_words_mean": n_words / len(texts),
        "empty_share": sum(not t.strip() for t in texts) / len(texts),
    }


def _first_words(texts: list[str], n: int) -> list[str]:
    out, total = [], 0
    for t in texts:
        if total >= n:
            break
        out.append(t)
        total += len(words(t))
    return out


def run(ctx: StageContext) -> dict[str, float]:
    p, lay, k = ctx.params, ctx.layout, ctx.gen
    device = lm.setup_torch(p.compute)
    tok = lm.load_tokenizer(lay.tokenizer)
    eos = lm.eos_id(tok)
    model = lm.load_model(lay.model(k), device)
    test = [r["text"] for r in io.read_rows(lay.real_test)]
    stream = lm.pack(tok, test)[: p.evaluate.max_test_tokens + 1]
    ce, entropy, n_tokens = lm.stream_ce(model, stream, p.train.block_size, p.generate.batch_size, device)
    # plain ancestral sampling (T=1, no truncation): the model's own distribution, whatever the
    # generate stage's sampling bias, so arms that differ only in sampling share generation 0
    cfg: GenerateParams = p.generate.model_copy(
        update={"num_samples": p.evaluate.num_samples, "temperature": 1.0, "top_k": 0, "top_p": 1.0}
    )
    ids = sample(
        model, [[eos]] * cfg.num_samples, cfg, eos, ctx.seed("eval-samples"), device, desc=f"gen {k}: eval samples"
    )
    texts = lm.decode(tok, ids)
    reference = model if k == 0 else lm.load_model(lay.model(0), device)  # frozen, real data only
    scored = lm.sequence_nll(reference, ids, eos, cfg.batch_size, device)
    ref_ppl = [math.exp(s / n) for s, n in scored if n > 0]  # empty samples have no perplexity
    metrics = {
        "test_ce": ce,
        "test_ppl": math.exp(ce),
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

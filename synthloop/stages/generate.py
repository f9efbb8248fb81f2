"""generate: sample synthetic documents from the previous generation's model.

Prompts (generate.prompt): the document separator alone (bos), a real document's first tokens
(prefix), or the model's chat template around an instruction (template). Each row keeps its
prompt (the prefix text or the instruction) as provenance; the sample is the new text only.
"""

from __future__ import annotations

import shutil
import time

from .. import faults, io, prompts
from ..models import lm
from ..models.sampler import sample
from ..records import sample_row
from .context import StageContext
from .table import stage_id


def make_prompts(tok: lm.Tok, real_texts: list[str], n: int, mode: str, prompt_tokens: int, rng) -> list[list[int]]:
    """n prompts: [SEP] for bos; else SEP + the first prompt_tokens tokens of random real documents."""
    if mode == "bos":
        return [[tok.sep] for _ in range(n)]
    prefixes = [ids[:prompt_tokens] for ids in lm.encode(tok, real_texts) if len(ids) >= prompt_tokens]
    if not prefixes:
        raise io.DataError(f"no real training document has generate.prompt_tokens = {prompt_tokens} tokens; lower it")
    return [[tok.sep, *rng.choice(prefixes)] for _ in range(n)]


def template_prompts(ctx: StageContext, tok: lm.Tok) -> tuple[list[list[int]], list[str]]:
    """(prompt ids, instructions): the model's chat template around instructions from
    generate.template with topics drawn from generate.topics."""
    template, topics = prompts.read(ctx.layout.root, ctx.params.generate)
    said = prompts.instructions(template, topics, ctx.params.generate.num_samples, ctx.rng("prompts"))
    return lm.chat_prompts(tok, said), said


def run(ctx: StageContext) -> dict[str, float]:
    p, lay, k = ctx.params, ctx.layout, ctx.gen
    device = lm.setup_torch(p.compute)
    tok = lm.load_tokenizer(lay.tokenizer)
    model = lm.load_model(lay.model(k - 1), device)
    if p.generate.prompt == "template":
        prompt_ids, prompt_texts = template_prompts(ctx, tok)
    else:
        real = [r["text"] for r in io.read_rows(lay.real_train)] if p.generate.prompt == "prefix" else []
        prompt_ids = make_prompts(
            tok, real, p.generate.num_samples, p.generate.prompt, p.generate.prompt_tokens, ctx.rng("prompts")
        )
        prompt_texts = lm.decode(tok, [pr[1:] for pr in prompt_ids])
    start = time.perf_counter()
    # finished batches are kept in shards: a killed generate resumes at the first missing batch
    new = sample(
        model,
        prompt_ids,
        p.generate,
        tok.stops,
        ctx.seed("generate"),
        device,
        desc=f"gen {k}: sampling",
        shards=lay.sample_shards(k),
        settings=io.weights_md5(lay.model(k - 1)),
        after_shard=lambda b: faults.point("mid:" + stage_id("generate", k)) if b == 0 else None,
    )
    seconds = time.perf_counter() - start
    texts = lm.decode(tok, new)
    io.write_rows(lay.synthetic(k), (sample_row(k, i, t, pt) for i, (t, pt) in enumerate(zip(texts, prompt_texts))))
    shutil.rmtree(lay.sample_shards(k), ignore_errors=True)  # synthetic.jsonl now holds what they held
    n_tokens = sum(len(ids) for ids in new)
    return {
        "n_generated": len(texts),
        "n_empty": sum(not t.strip() for t in texts),
        "gen_tokens": n_tokens,
        "gen_tokens_per_s": n_tokens / max(seconds, 1e-9),
    }

"""generate: write generation k's synthetic documents.

Who writes them (generate.source): the previous generation's model (self: the self-consuming
loop) or one fixed teacher for every generation (distillation). Where it runs (generate.backend):
in this process (local), vLLM's engine on a GPU (vllm), or an OpenAI-compatible server (http).
Prompts (generate.prompt): the document separator alone (bos), a real document's first tokens
(prefix), or a chat template around an instruction (template). Each row keeps its prompt and
its writer as provenance; the sample is the new text only. Every generation records the prompt
and completion tokens it spent (the server's usage fields, else the tokenizer's count), their
cost at generate.price_per_mtok, and whether the budget generate.max_tokens_total stopped it.
"""

from __future__ import annotations

import functools
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .. import cluster, faults, io, prompts
from ..models import lm
from ..records import sample_row
from .context import StageContext
from .table import stage_id


@dataclass
class Written:
    texts: list[str]
    prompts: list[str]  # each sample's prompt, as provenance
    prompt_tokens: int
    completion_tokens: int
    budget_hit: bool
    truncated: list[bool]  # each sample: cut at generate.max_new_tokens, its text unfinished


def make_prompts(tok: lm.Tok, real_texts: list[str], n: int, mode: str, prompt_tokens: int, rng) -> list[list[int]]:
    """n prompts: [SEP] for bos; else SEP + the first prompt_tokens tokens of random real documents."""
    if mode == "bos":
        return [[tok.sep] for _ in range(n)]
    prefixes = [ids[:prompt_tokens] for ids in lm.encode(tok, real_texts) if len(ids) >= prompt_tokens]
    if not prefixes:
        raise io.DataError(f"no real training document has generate.prompt_tokens = {prompt_tokens} tokens; lower it")
    return [[tok.sep, *rng.choice(prefixes)] for _ in range(n)]


def instructions(ctx: StageContext) -> list[str]:
    """generate.template's instruction with topics drawn from generate.topics, one per sample."""
    template, topics = prompts.read(ctx.layout.root, ctx.params.generate)
    return prompts.instructions(template, topics, ctx.params.generate.num_samples, ctx.rng("prompts"))


def prompt_ids(ctx: StageContext, tok: lm.Tok) -> tuple[list[list[int]], list[str]]:
    """(token ids, provenance text) of every sample's prompt, in the writer's tokenizer."""
    g = ctx.params.generate
    if g.prompt == "template":
        said = instructions(ctx)
        return lm.chat_prompts(tok, said), said
    real = [r["text"] for r in io.read_rows(ctx.layout.real_train)] if g.prompt == "prefix" else []
    ids = make_prompts(tok, real, g.num_samples, g.prompt, g.prompt_tokens, ctx.rng("prompts"))
    return ids, lm.decode(tok, [pr[1:] for pr in ids])


@dataclass
class Writer:
    """The model that writes the samples in this process."""

    model: object
    tok: lm.Tok
    where: str  # its folder, file or hub id (what vLLM loads)
    settings: str  # what decides its samples besides the prompts: its weights' md5
    name: str  # provenance: gen<k-1> or teacher:<generate.teacher>


def writer(ctx: StageContext, device) -> Writer:
    p, lay, k = ctx.params, ctx.layout, ctx.gen
    if p.generate.source == "self":
        path = lay.model(k - 1)
        model, tok = lm.load_model(path, device), lm.load_tokenizer(lay.tokenizer)
        return Writer(model, tok, str(path), io.weights_md5(path), f"gen{k - 1}")
    from ..models import source

    src = source.resolve(p.generate.teacher, lay.root, "generate.teacher")
    model, hf_tok = source.load(src)
    where = Path(src.where)
    digest = io.md5_file(where) if src.kind == "gguf" else io.weights_md5(where) if src.kind == "folder" else ""
    return Writer(
        model.to(device),
        source.tok_of(hf_tok, model),
        src.where,
        f"{src.where}|{digest}",
        f"teacher:{p.generate.teacher}",
    )


def in_process(ctx: StageContext) -> tuple[Written, str]:
    """Samples from a model loaded here: torch (local) or vLLM's engine (vllm)."""
    from ..models.sampler import sample

    g, lay, k = ctx.params.generate, ctx.layout, ctx.gen
    if g.backend == "vllm":
        from ..backends.vllm import check

        check()  # no CUDA, no vLLM: one line before any model loads
    device = lm.setup_torch(ctx.params.compute)
    w = writer(ctx, device)
    tok = w.tok
    ids, texts = prompt_ids(ctx, tok)
    if g.backend == "vllm":
        from ..backends.vllm import Engine

        engine = Engine(w.where, ctx.seed("generate"), lm.context_length(w.model))
        new = engine.sample(ids, g, tok.stops, ctx.seed("generate"))
    else:
        # finished batches are kept in shards: a killed generate resumes at the first missing batch;
        # on a cluster, the missing batches are sampled on its workers at once
        spread = None
        if cluster.pool() is not None and not g.max_tokens_total:
            job = (ctx.params.model_dump_json(), str(lay.root), k)
            spread = lambda missing: cluster.spread(sample_shard, [(*job, b) for b in missing])  # noqa: E731
        new = sample(
            w.model,
            ids,
            g,
            tok.stops,
            ctx.seed("generate"),
            device,
            desc=f"gen {k}: sampling",
            shards=lay.sample_shards(k),
            settings=w.settings,
            after_shard=lambda b: faults.point("mid:" + stage_id("generate", k)) if b == 0 else None,
            budget=g.max_tokens_total,
            elsewhere=spread,
        )
    done = [i for i, row in enumerate(new) if row is not None]
    return Written(
        lm.decode(tok, [new[i] for i in done]),
        [texts[i] for i in done],
        sum(len(ids[i]) for i in done),
        sum(len(new[i]) for i in done),
        len(done) < len(ids),
        [len(new[i]) >= g.max_new_tokens for i in done],  # no stop token came before the cap
    ), w.name


@functools.lru_cache(maxsize=1)  # a worker keeps the last writer it loaded: one load per stage, not per batch
def _on_worker(params_json: str, root: str, k: int):
    from ..config import Params
    from ..layout import Layout
    from ..models.sampler import forward_factory

    params = Params.model_validate_json(params_json)
    ctx = StageContext(params, Layout.of(params, Path(root)), k, lambda *metric: None)
    device = lm.setup_torch(params.compute)
    w = writer(ctx, device)
    ids = prompt_ids(ctx, w.tok)[0]
    batches = lm.batches_by_length([len(p) for p in ids], params.generate.batch_size, equal=True)
    return ctx, ids, batches, forward_factory(w.model, params.generate, w.tok.stops), device


def sample_shard(params_json: str, root: str, k: int, b: int) -> str:
    """On a cluster worker: batch b of generation k's samples, written as its shard file (the
    rows sampler.sample writes for it, from the same model, prompts and seed)."""
    from ..models.sampler import sample_batch
    from ..shards import shard_path

    ctx, ids, batches, make, device = _on_worker(params_json, root, k)
    path = shard_path(ctx.layout.sample_shards(k), b)
    io.write_rows(path, sample_batch(make, ids, batches[b], ctx.seed("generate"), b, device))
    return str(path)


def over_http(ctx: StageContext) -> tuple[Written, str]:
    """Samples from the teacher behind generate.base_url; prefixes are cut with the loop's tokenizer."""
    from ..backends import remote

    g, lay, k = ctx.params.generate, ctx.layout, ctx.gen
    if g.prompt == "template":
        texts = instructions(ctx)
    else:
        texts = prompt_ids(ctx, lm.load_tokenizer(lay.tokenizer))[1]
    client = remote.client_of(g)
    remote.check(g, client)
    rows = remote.generate(
        client,
        remote.bodies(g, texts, ctx.seed("generate")),
        g,
        lay.sample_shards(k),
        f"gen {k}: {g.model} at {g.base_url}",
        after_shard=lambda b: faults.point("mid:" + stage_id("generate", k)) if b == 0 else None,
    )
    out, sent = [r["text"] for r in rows], texts[: len(rows)]
    counted = {
        f: sum(r[f] for r in rows)
        for f in ("prompt_tokens", "completion_tokens")
        if all(r[f] is not None for r in rows)
    }
    if len(counted) < 2:  # a server without usage fields: the loop's tokenizer counts
        tok = lm.load_tokenizer(lay.tokenizer)
        counted = {
            f: sum(map(len, lm.encode(tok, x))) for f, x in (("prompt_tokens", sent), ("completion_tokens", out))
        }
    cut = [  # the server's word for "hit max_tokens", else its count of completion tokens
        r.get("finish_reason") == "length"
        if r.get("finish_reason")
        else (r.get("completion_tokens") or 0) >= g.max_new_tokens
        for r in rows
    ]
    used = Written(out, sent, counted["prompt_tokens"], counted["completion_tokens"], len(rows) < len(texts), cut)
    return used, f"teacher:{g.model}@{g.base_url}"


def run(ctx: StageContext) -> dict[str, float]:
    g, lay, k = ctx.params.generate, ctx.layout, ctx.gen
    start = time.perf_counter()
    written, name = over_http(ctx) if g.backend == "http" else in_process(ctx)
    seconds = time.perf_counter() - start
    parent = k - 1 if g.source == "self" else None
    rows = (
        sample_row(k, i, t, pt, name, parent, cut)
        for i, (t, pt, cut) in enumerate(zip(written.texts, written.prompts, written.truncated))
    )
    io.write_rows(lay.synthetic(k), rows)
    shutil.rmtree(lay.sample_shards(k), ignore_errors=True)  # synthetic.jsonl now holds what they held
    price_in, price_out = g.price_per_mtok
    stats = {
        "n_generated": len(written.texts),
        "n_empty": sum(not t.strip() for t in written.texts),
        "truncated_share": sum(written.truncated) / max(1, len(written.truncated)),
        "prompt_tokens": written.prompt_tokens,
        "completion_tokens": written.completion_tokens,
        "cost": (written.prompt_tokens * price_in + written.completion_tokens * price_out) / 1e6,
        "budget_hit": int(written.budget_hit),
    }
    io.write_json(lay.generate_stats(k), stats)  # deterministic numbers only: DVC records this file
    return {**stats, "gen_tokens_per_s": written.completion_tokens / max(seconds, 1e-9)}

"""Batched sampling: prompts bucketed by length, a KV cache, finished rows dropped as they end.

`sample` is what the stages call. GPT-2 and Llama-family checkpoints decode through
`fast.GPT2Decoder` / `fast.LlamaDecoder` (a preallocated cache, a few ops per layer);
other architectures through HF `generate`. Every sample is cut at its first stop token
(end-of-text, or any of the model's own end tokens): batched decoding keeps stepping
finished rows until they are dropped, and that padding must never reach the synthetic
data (STACK-NOTES trap).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import torch

from ..config import GenerateParams
from ..keys import content_key, derive_seed
from ..progress import Progress
from ..shards import run_in_shards
from .lm import batches_by_length


class Forward(Protocol):
    """Incremental decoding state for one batch of equal-length prompts."""

    def prefill(self, prompts: torch.Tensor) -> None: ...  # (batch, P): the state of positions 0..P-1
    def step(self, tokens: torch.Tensor, pos: int) -> torch.Tensor: ...  # (batch,) -> (batch, vocab) fp32
    def keep(self, rows: torch.Tensor) -> None: ...  # drop the other rows from the state


class Cached:
    """A fast decoder (`fast.GPT2Decoder`, `fast.LlamaDecoder`) with its KV cache for one batch;
    the cache is (layers, 2, batch, ...), so dropping rows is one index."""

    def __init__(self, decoder, batch: int, length: int):
        self.decoder, self.cache = decoder, decoder.new_cache(batch, length)

    def prefill(self, prompts: torch.Tensor) -> None:
        """Write the K/V of prompts (batch, P) at positions 0..P-1."""
        if hasattr(self.decoder, "prefill"):  # all positions in one pass
            self.decoder.prefill(prompts, self.cache)
        else:
            for pos in range(prompts.size(1)):
                self.decoder.step(prompts[:, pos], pos, self.cache)

    def step(self, tokens: torch.Tensor, pos: int) -> torch.Tensor:
        return self.decoder.step(tokens, pos, self.cache)

    def keep(self, rows: torch.Tensor) -> None:
        self.cache = self.cache[:, :, rows]


def pick(logits: torch.Tensor, cfg: GenerateParams, gen: torch.Generator) -> torch.Tensor:
    """Temperature, top-k and top-p in one pass over the (at most k) candidates, then a draw."""
    logits = logits / cfg.temperature
    if cfg.top_k:
        logits, idx = logits.topk(min(cfg.top_k, logits.size(-1)), dim=-1)
    elif cfg.top_p < 1:
        logits, idx = logits.sort(dim=-1, descending=True)
    else:
        idx = None
    if cfg.top_p < 1:
        probs = logits.softmax(-1)
        beyond = probs.cumsum(-1) - probs > cfg.top_p  # keep the smallest prefix reaching top_p
        logits = logits.masked_fill(beyond, float("-inf"))
    choice = _draw(logits.softmax(-1), gen)
    return choice if idx is None else idx.gather(1, choice[:, None]).squeeze(1)


def _draw(probs: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One index per row by inverse CDF: one uniform per row instead of torch.multinomial's
    one exponential per vocabulary entry (7 ms of a ~10 ms step at batch 64 here)."""
    cdf = probs.cumsum(-1)
    u = torch.rand(probs.size(0), 1, generator=gen, device=probs.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u).clamp_(max=probs.size(-1) - 1).squeeze(1)


def stops_of(stop: int | Sequence[int]) -> tuple[int, ...]:
    """The stop tokens: one id (end-of-text) or several (a pretrained model's end tokens)."""
    return (stop,) if isinstance(stop, int) else tuple(dict.fromkeys(stop))


@torch.no_grad()
def decode(
    forward: Forward, prompts: torch.Tensor, cfg: GenerateParams, stop: int | Sequence[int], gen: torch.Generator
) -> list[list[int]]:
    """New tokens for each row of `prompts` (batch, P), cut at the first stop token."""
    stops = stops_of(stop)
    stop_ids = torch.tensor(stops, device=prompts.device)
    batch, plen = prompts.shape
    if plen > 1:
        forward.prefill(prompts[:, :-1])
    out = torch.full((batch, cfg.max_new_tokens), stops[0], dtype=torch.long, device=prompts.device)
    alive = torch.arange(batch, device=prompts.device)
    tokens = prompts[:, -1]
    ended_since_compact = 0
    for t in range(cfg.max_new_tokens):
        nxt = pick(forward.step(tokens, plen - 1 + t), cfg, gen)
        out[alive, t] = nxt
        ended = torch.isin(nxt, stop_ids) if len(stops) > 1 else nxt == stops[0]
        ended_since_compact += int(ended.sum())
        if ended_since_compact and ended_since_compact * 8 >= len(alive):  # drop finished rows
            done = out[alive, : t + 1]
            running = ~(torch.isin(done, stop_ids) if len(stops) > 1 else done == stops[0]).any(1)
            if not running.any():
                break
            rows = running.nonzero().squeeze(1)
            forward.keep(rows)
            alive, nxt, ended_since_compact = alive[rows], nxt[rows], 0
        tokens = nxt
    return [_cut(row, stops) for row in out.tolist()]


def _cut(row: list[int], stops: tuple[int, ...]) -> list[int]:
    return next((row[:i] for i, t in enumerate(row) if t in stops), row)


def batch_seed(seed: int, b: int) -> int:
    """The seed of batch b: each batch draws from its own generator, so a batch can be
    computed (or resumed from its shard) without replaying the batches before it."""
    return derive_seed(seed, "batch", b, bits=63)


def sample(
    model: torch.nn.Module,
    prompts: list[list[int]],
    cfg: GenerateParams,
    stop: int | Sequence[int],
    seed: int,
    device: torch.device,
    desc: str = "sampling",
    shards: Path | None = None,
    settings: str = "",
    after_shard: Callable[[int], None] | None = None,
    budget: int = 0,
    elsewhere: Callable[[list[int]], None] | None = None,
) -> list[list[int] | None]:
    """New tokens for each prompt (prompt excluded), cut at the first stop token.

    With `shards` (a folder), every finished batch is written there as it completes and a
    rerun with the same prompts, settings and seed reads it back instead of sampling it
    again; `settings` must name whatever else decides the tokens (the model's weights).
    `budget` > 0: stop after the batch whose new tokens reach it; unsampled prompts get None.
    `elsewhere`: computes missing batches' shards on a cluster (see shards.run_in_shards); each
    must equal `sample_batch` of the same batch.
    """
    make = forward_factory(model, cfg, stop)
    batches = batches_by_length([len(p) for p in prompts], cfg.batch_size, equal=True)

    def one(b: int) -> list[dict]:
        return sample_batch(make, prompts, batches[b], seed, b, device)

    if shards is None:
        rows = []
        with Progress(len(prompts), desc, unit="sample") as bar:
            for b in range(len(batches)):
                rows.append(one(b))
                bar.update(len(batches[b]))
    else:
        key = content_key(prompts, cfg.sampling(), seed, settings)
        spent = (lambda done: sum(len(r["ids"]) for s in done for r in s) >= budget) if budget else None
        sizes = [len(b) for b in batches]
        rows = run_in_shards(shards, key, sizes, one, desc, after_shard=after_shard, stop=spent, elsewhere=elsewhere)
    out: list[list[int] | None] = [None for _ in prompts]
    for idx, shard in zip(batches, rows):
        for i, row in zip(idx, shard):
            out[i] = row["ids"]
    return out


def sample_batch(make, prompts: list[list[int]], idx: list[int], seed: int, b: int, device) -> list[dict]:
    """Batch b (the prompts at `idx`) as shard rows: its own generator, seeded by (seed, b)."""
    batch = torch.tensor([prompts[i] for i in idx], dtype=torch.long, device=device)
    gen = torch.Generator(device=device).manual_seed(batch_seed(seed, b))
    return [{"ids": row} for row in make(batch, gen)]


def forward_factory(
    model: torch.nn.Module, cfg: GenerateParams, stop: int | Sequence[int] | None = None
) -> Callable[[torch.Tensor, torch.Generator], list[list[int]]]:
    """batch of prompts -> decoded rows, with the fastest path this model supports;
    `stop`: the tokens a sample ends at (default: the model config's end-of-text)."""
    stop = model.config.eos_token_id if stop is None else stop
    decoder = fast_decoder(model)
    if decoder is None:
        return lambda batch, gen: hf_generate(model, batch, cfg, stop, gen)
    return lambda batch, gen: decode(
        Cached(decoder, batch.size(0), batch.size(1) + cfg.max_new_tokens), batch, cfg, stop, gen
    )


def fast_decoder(model: torch.nn.Module):
    """The lean decoder for this model's architecture, or None (HF `generate` then)."""
    from . import fast

    kind = getattr(model.config, "model_type", "")
    if kind == "gpt2":
        return fast.GPT2Decoder(model)
    if kind == "llama" and hasattr(fast, "LlamaDecoder") and fast.LlamaDecoder.supports(model.config):
        return fast.LlamaDecoder(model)
    return None


@torch.no_grad()
def hf_generate(
    model: torch.nn.Module,
    batch: torch.Tensor,
    cfg: GenerateParams,
    stop: int | Sequence[int],
    gen: torch.Generator,
    static_cache: bool = False,
) -> list[list[int]]:
    """transformers `generate` (any architecture); seeded from `gen` through the global RNG."""
    stops = stops_of(stop)
    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
    ids = model.generate(
        input_ids=batch,
        attention_mask=torch.ones_like(batch),
        do_sample=True,
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_k=cfg.top_k,
        top_p=cfg.top_p,
        pad_token_id=stops[0],
        eos_token_id=list(stops),
        **({"cache_implementation": "static"} if static_cache else {}),
    )
    return [_cut(row, stops) for row in ids[:, batch.size(1) :].tolist()]

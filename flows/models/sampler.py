"""Batched sampling with a KV cache (transformers `generate`), cut at end-of-text."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ..config import GenerateParams


@torch.no_grad()
def sample(model: torch.nn.Module, prompts: list[list[int]], cfg: GenerateParams, eos: int,
           seed: int, device: torch.device, desc: str = "sampling") -> list[list[int]]:
    """New tokens for each prompt (prompt excluded), cut at the first end-of-text.

    Prompts of equal length are batched together, so no padding enters a batch.
    Batched `generate` pads finished rows with end-of-text; cutting at the first
    one keeps that padding out of the synthetic data (STACK-NOTES trap).
    """
    torch.manual_seed(seed)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[list[int]] = [[] for _ in prompts]
    batches = [order[s:s + cfg.batch_size] for s in range(0, len(order), cfg.batch_size)]
    with tqdm(total=len(prompts), desc=desc, unit="doc", leave=False) as bar:
        for idx in batches:
            for same_len in _split_by_length(idx, prompts):
                ids = torch.tensor([prompts[i] for i in same_len], dtype=torch.long, device=device)
                gen = model.generate(
                    input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True,
                    max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                    top_k=cfg.top_k, top_p=cfg.top_p, pad_token_id=eos, eos_token_id=eos)
                for row, i in enumerate(same_len):
                    new = gen[row, ids.size(1):].tolist()
                    out[i] = new[: new.index(eos)] if eos in new else new
                bar.update(len(same_len))
    return out


def _split_by_length(idx: list[int], prompts: list[list[int]]) -> list[list[int]]:
    groups: dict[int, list[int]] = {}
    for i in idx:
        groups.setdefault(len(prompts[i]), []).append(i)
    return list(groups.values())

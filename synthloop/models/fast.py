"""A lean decoder for GPT-2 checkpoints: preallocated KV cache, a few fused torch ops per layer.

HF `generate` spends most of each step in Python bookkeeping (cache objects, logits
processors, stopping criteria); at this model size that, not arithmetic, is the cost.
This module reads the weights of a transformers GPT-2 model once and runs one
decoding step as ~10 tensor ops per layer. Llama checkpoints use HF `generate`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class _Layer:
    ln1: tuple[torch.Tensor, torch.Tensor]
    attn_w: torch.Tensor
    attn_b: torch.Tensor
    proj_w: torch.Tensor
    proj_b: torch.Tensor
    ln2: tuple[torch.Tensor, torch.Tensor]
    fc_w: torch.Tensor
    fc_b: torch.Tensor
    out_w: torch.Tensor
    out_b: torch.Tensor


class GPT2Decoder:
    """Incremental GPT-2 forward over a (layers, 2, batch, heads, time, head_dim) cache."""

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype = torch.float32):
        cfg = model.config
        if getattr(cfg, "model_type", "") != "gpt2":
            raise ValueError("GPT2Decoder needs a GPT-2 checkpoint")
        t = model.transformer
        cast = lambda p: p.detach().to(dtype)  # noqa: E731
        self.wte, self.wpe = cast(t.wte.weight), cast(t.wpe.weight)
        self.head = cast(model.lm_head.weight)
        self.lnf = (cast(t.ln_f.weight), cast(t.ln_f.bias))
        self.eps = cfg.layer_norm_epsilon
        self.heads, self.dim = cfg.n_head, cfg.n_embd
        self.context, self.dtype = cfg.n_positions, dtype
        self.layers = [
            _Layer(
                (cast(b.ln_1.weight), cast(b.ln_1.bias)),
                cast(b.attn.c_attn.weight),
                cast(b.attn.c_attn.bias),
                cast(b.attn.c_proj.weight),
                cast(b.attn.c_proj.bias),
                (cast(b.ln_2.weight), cast(b.ln_2.bias)),
                cast(b.mlp.c_fc.weight),
                cast(b.mlp.c_fc.bias),
                cast(b.mlp.c_proj.weight),
                cast(b.mlp.c_proj.bias),
            )
            for b in t.h
        ]

    def new_cache(self, batch: int, length: int) -> torch.Tensor:
        hd = self.dim // self.heads
        return torch.empty(len(self.layers), 2, batch, self.heads, length, hd, dtype=self.dtype, device=self.wte.device)

    @torch.no_grad()
    def step(self, tokens: torch.Tensor, pos: int, cache: torch.Tensor) -> torch.Tensor:
        """Logits (fp32) for `tokens` (batch,) at position `pos`; writes K/V at `pos`."""
        b, d, h = tokens.size(0), self.dim, self.heads
        x = self.wte[tokens] + self.wpe[pos]
        for i, L in enumerate(self.layers):
            a = F.layer_norm(x, (d,), *L.ln1, self.eps)
            q, k, v = torch.addmm(L.attn_b, a, L.attn_w).view(b, 3, h, d // h).unbind(1)
            cache[i, 0, :, :, pos] = k
            cache[i, 1, :, :, pos] = v
            att = F.scaled_dot_product_attention(
                q.unsqueeze(2), cache[i, 0, :, :, : pos + 1], cache[i, 1, :, :, : pos + 1]
            )
            x = x + torch.addmm(L.proj_b, att.reshape(b, d), L.proj_w)
            m = F.layer_norm(x, (d,), *L.ln2, self.eps)
            x = x + torch.addmm(L.out_b, F.gelu(torch.addmm(L.fc_b, m, L.fc_w), approximate="tanh"), L.out_w)
        x = F.layer_norm(x, (d,), *self.lnf, self.eps)
        return (x @ self.head.T).float()

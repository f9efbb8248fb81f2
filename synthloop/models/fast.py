"""Lean decoders for GPT-2 and Llama checkpoints: preallocated KV cache, a few fused torch ops per layer.

HF `generate` spends most of each step in Python bookkeeping (cache objects, logits
processors, stopping criteria); at this model size that, not arithmetic, is the cost.
This module reads the weights of a transformers GPT-2 model once and runs one
decoding step as ~10 tensor ops per layer. `LlamaDecoder` does the same for plain Llama
checkpoints (others use HF `generate`); at their size (135M+) the matmuls are the cost, so
on CPU its linears run through oneDNN with prepacked weights (`_Linear`).
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


class _Linear:
    """x @ w.T for a fixed weight. On CPU through oneDNN with the weight reordered once into its
    blocked layout: at decoding batch sizes (16-64 rows) that ran 1.5-4x faster than F.linear's MKL
    sgemm here (AMD EPYC, 2 threads). Elsewhere, or where that op is missing, F.linear."""

    def __init__(self, w: torch.Tensor):
        self.packed = _onednn_pack(w)
        self.w = w if self.packed is None else None  # the packed copy replaces it

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is None:
            return F.linear(x, self.w)
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, None, "none", [], "")


_ONEDNN_OK: bool | None = None


def _onednn_pack(w: torch.Tensor) -> torch.Tensor | None:
    """w reordered for oneDNN's linear, or None where that path is unavailable or disagrees with F.linear."""
    global _ONEDNN_OK
    if w.device.type != "cpu" or w.dtype != torch.float32 or not torch.backends.mkldnn.is_available():
        return None
    if _ONEDNN_OK is None:  # once per process: the op exists and computes F.linear
        try:
            a, x = torch.linspace(-1, 1, 960).view(24, 40), torch.linspace(-9, 9, 200).cos().view(5, 40)  # no RNG
            y = torch.ops.mkldnn._linear_pointwise(
                x, torch.ops.mkldnn._reorder_linear_weight(a, None), None, "none", [], ""
            )
            _ONEDNN_OK = torch.allclose(y, F.linear(x, a), atol=1e-4)
        except (AttributeError, RuntimeError):
            _ONEDNN_OK = False
    return torch.ops.mkldnn._reorder_linear_weight(w, None) if _ONEDNN_OK else None


@dataclass
class _LlamaLayer:
    ln1: torch.Tensor  # RMSNorm weight before attention
    qkv: _Linear  # q, k, v fused: (heads + 2 kv_heads) * head_dim outputs
    o: _Linear
    ln2: torch.Tensor  # RMSNorm weight before the MLP
    gate_up: _Linear  # gate, up fused: 2 intermediate outputs
    down: _Linear


class LlamaDecoder:
    """Incremental Llama forward (RoPE, grouped-query attention, RMSNorm, SwiGLU) over a
    (layers, 2, batch, kv_heads, time, head_dim) cache; only configs `supports` accepts."""

    @staticmethod
    def supports(config) -> bool:
        """True when this decoder computes what HF `LlamaForCausalLM` computes for `config`."""
        if getattr(config, "model_type", "") != "llama" or getattr(config, "hidden_act", "") != "silu":
            return False
        if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
            return False
        if getattr(config, "pretraining_tp", 1) != 1 or _rope_theta(config) is None:
            return False
        return config.num_attention_heads % (getattr(config, "num_key_value_heads", None) or 1) == 0

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype = torch.float32):
        cfg = model.config
        if not self.supports(cfg):
            raise ValueError("LlamaDecoder needs a plain Llama checkpoint (see LlamaDecoder.supports)")
        m = model.model
        cast = lambda p: p.detach().to(dtype)  # noqa: E731
        self.embed = cast(m.embed_tokens.weight)
        head = model.lm_head.weight
        self.tied = head.data_ptr() == m.embed_tokens.weight.data_ptr()
        self.head = _Linear(self.embed if self.tied else cast(head))
        self.norm = cast(m.norm.weight)
        self.eps = cfg.rms_norm_eps
        self.heads = cfg.num_attention_heads
        self.kv_heads = getattr(cfg, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads
        self.dim, self.dtype, self.scale = cfg.hidden_size, dtype, self.head_dim**-0.5
        self.theta, self.context = _rope_theta(cfg), cfg.max_position_embeddings
        self.layers = []
        for b in m.layers:
            a, mlp = b.self_attn, b.mlp
            self.layers.append(
                _LlamaLayer(
                    cast(b.input_layernorm.weight),
                    _Linear(torch.cat([cast(a.q_proj.weight), cast(a.k_proj.weight), cast(a.v_proj.weight)])),
                    _Linear(cast(a.o_proj.weight)),
                    cast(b.post_attention_layernorm.weight),
                    _Linear(torch.cat([cast(mlp.gate_proj.weight), cast(mlp.up_proj.weight)])),
                    _Linear(cast(mlp.down_proj.weight)),
                )
            )
        self._cos = self._sin = torch.empty(0, self.head_dim, dtype=dtype, device=self.embed.device)

    def new_cache(self, batch: int, length: int) -> torch.Tensor:
        self._rope(length)
        shape = (len(self.layers), 2, batch, self.kv_heads, length, self.head_dim)
        return torch.empty(shape, dtype=self.dtype, device=self.embed.device)

    def _rope(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sign-folded sin (length, head_dim) as HF computes them (fp32), grown on demand:
        rotate_half(x) * sin == roll(x, head_dim / 2) * [-sin, sin]."""
        if self._cos.size(0) < length:
            n = max(length, min(self.context, 2 * self._cos.size(0)))
            hd, dev = self.head_dim, self.embed.device
            inv_freq = 1.0 / (self.theta ** (torch.arange(0, hd, 2, dtype=torch.int64, device=dev).float() / hd))
            freqs = torch.arange(n, device=dev).float()[:, None] * inv_freq
            emb = torch.cat((freqs, freqs), dim=-1)
            sin = emb.sin()
            sin[:, : hd // 2].neg_()
            self._cos, self._sin = emb.cos().to(self.dtype), sin.to(self.dtype)
        return self._cos, self._sin

    def _rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(x * cos, x.roll(self.head_dim // 2, -1), sin)

    def _mlp(self, x: torch.Tensor, L: _LlamaLayer) -> torch.Tensor:
        gate, up = L.gate_up(F.rms_norm(x, (self.dim,), L.ln2, self.eps)).chunk(2, -1)
        return L.down(F.silu(gate).mul_(up)).add_(x)

    @torch.no_grad()
    def step(self, tokens: torch.Tensor, pos: int, cache: torch.Tensor) -> torch.Tensor:
        """Logits (fp32) for `tokens` (batch,) at position `pos`; writes K/V at `pos`."""
        b, h, kv, hd, d = tokens.size(0), self.heads, self.kv_heads, self.head_dim, self.dim
        cos, sin = self._rope(pos + 1)
        cos, sin = cos[pos], sin[pos]
        x = self.embed[tokens]
        for i, L in enumerate(self.layers):
            qkv = L.qkv(F.rms_norm(x, (d,), L.ln1, self.eps))
            qk = self._rotate(qkv[:, : (h + kv) * hd].view(b, h + kv, hd), cos, sin)
            cache[i, 0, :, :, pos] = qk[:, h:]
            cache[i, 1, :, :, pos] = qkv[:, (h + kv) * hd :].view(b, kv, hd)
            # one query position: a kv head's G query heads attend like G query positions, no mask;
            # two matmuls and a softmax (2-3x faster than SDPA's CPU kernel at these sizes)
            q = qk[:, :h].reshape(b, kv, h // kv, hd)
            scores = torch.matmul(q, cache[i, 0, :, :, : pos + 1].transpose(-1, -2)).mul_(self.scale)
            att = torch.matmul(scores.softmax(-1), cache[i, 1, :, :, : pos + 1])
            x = self._mlp(L.o(att.reshape(b, h * hd)).add_(x), L)
        return self.head(F.rms_norm(x, (d,), self.norm, self.eps)).float()

    @torch.no_grad()
    def prefill(self, prompts: torch.Tensor, cache: torch.Tensor) -> None:
        """Write the K/V of `prompts` (batch, P) at positions 0..P-1, all positions in one pass."""
        (b, p), h, kv, hd, d = prompts.shape, self.heads, self.kv_heads, self.head_dim, self.dim
        cos, sin = self._rope(p)
        cos, sin = cos[:p, None], sin[:p, None]  # (P, 1, head_dim) against (batch, P, heads, head_dim)
        x = self.embed[prompts.reshape(-1)]
        last = len(self.layers) - 1
        for i, L in enumerate(self.layers):
            qkv = L.qkv(F.rms_norm(x, (d,), L.ln1, self.eps)).view(b, p, h + 2 * kv, hd)
            qk = self._rotate(qkv[:, :, : h + kv], cos, sin)
            cache[i, 0, :, :, :p] = qk[:, :, h:].transpose(1, 2)
            cache[i, 1, :, :, :p] = qkv[:, :, h + kv :].transpose(1, 2)
            if i == last:  # nothing after the last layer's K/V is needed
                break
            q, k, v = qk[:, :, :h].transpose(1, 2), cache[i, 0, :, :, :p], cache[i, 1, :, :, :p]
            att = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            x = self._mlp(L.o(att.transpose(1, 2).reshape(b * p, h * hd)).add_(x), L)


def _rope_theta(config) -> float | None:
    """The RoPE base of a plain ('default') rotary embedding, or None for any other kind."""
    rope = getattr(config, "rope_parameters", None)
    if rope is None:  # transformers < 5: rope_theta and rope_scaling attributes
        scaling = getattr(config, "rope_scaling", None)
        if scaling and scaling.get("rope_type", scaling.get("type", "default")) != "default":
            return None
        return getattr(config, "rope_theta", None)
    if not isinstance(rope, dict) or rope.get("rope_type", rope.get("type")) != "default":
        return None
    theta = rope.get("rope_theta", getattr(config, "rope_theta", None))
    return None if theta is None else float(theta)

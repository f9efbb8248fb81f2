"""LlamaDecoder computes what HF LlamaForCausalLM computes, and samples the same tokens."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from synthloop.config import GenerateParams
from synthloop.models import fast, sampler
from synthloop.models.fast import LlamaDecoder
from synthloop.models.sampler import Cached, decode
from tests.unit.test_sampler import Recompute

STOP = (7, 11)


def gen_cfg(**kw) -> GenerateParams:
    """Only the sampling fields decode reads (model_construct: other sections' fields don't matter here)."""
    base = dict(max_new_tokens=16, temperature=1.0, top_k=0, top_p=1.0, batch_size=8)
    return GenerateParams.model_construct(**{**base, **kw})


def tiny_config(**kw) -> LlamaConfig:
    base = dict(
        vocab_size=300,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        max_position_embeddings=128,
        tie_word_embeddings=True,
    )
    return LlamaConfig(**{**base, **kw})


def build(**kw) -> LlamaForCausalLM:
    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_config(**kw)).eval()
    with torch.no_grad():  # larger weights than the init, and larger stop-id head rows: rows stop at varied steps
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.15)
        model.lm_head.weight[list(STOP)] *= 2
    return model


MODELS = {
    "tied": dict(),
    "untied": dict(tie_word_embeddings=False, rope_parameters={"rope_type": "default", "rope_theta": 500.0}),
    "head_dim": dict(head_dim=24, num_key_value_heads=1),  # head_dim != hidden / heads; one kv head
}


@pytest.fixture(scope="module", params=list(MODELS))
def model(request):
    return build(**MODELS[request.param])


@pytest.mark.parametrize("onednn", [True, False], ids=["detected", "F.linear"])
def test_step_and_prefill_match_hf_logits(model, onednn, monkeypatch):
    if not onednn:  # the portable path (GPU, or a CPU build without the oneDNN linear op)
        monkeypatch.setattr(fast, "_ONEDNN_OK", False)
    torch.manual_seed(1)
    seq = torch.randint(0, 300, (3, 9))
    decoder = LlamaDecoder(model)
    assert (decoder.head.packed is None) == (not onednn or not fast._ONEDNN_OK)
    cache = decoder.new_cache(3, seq.size(1))
    ours = torch.stack([decoder.step(seq[:, p], p, cache) for p in range(seq.size(1))], 1)
    with torch.no_grad():
        theirs = model(input_ids=seq).logits
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)

    for split in (1, 5, 8):
        filled = decoder.new_cache(3, seq.size(1))
        decoder.prefill(seq[:, :split], filled)
        torch.testing.assert_close(filled[:, :, :, :, :split], cache[:, :, :, :, :split], atol=1e-5, rtol=1e-5)
        after = torch.stack([decoder.step(seq[:, p], p, filled) for p in range(split, seq.size(1))], 1)
        torch.testing.assert_close(after, ours[:, split:], atol=1e-5, rtol=1e-5)


def test_tied_and_untied_heads_are_told_apart():
    assert LlamaDecoder(build()).tied and not LlamaDecoder(build(tie_word_embeddings=False)).tied


@pytest.mark.parametrize("plen", [1, 5])
@pytest.mark.parametrize("kw", [{}, {"temperature": 0.7, "top_k": 20, "top_p": 0.9}])
def test_cached_decoder_matches_recompute(model, plen, kw):
    cfg = gen_cfg(**kw)
    prompts = torch.randint(12, 300, (8, plen), generator=torch.Generator().manual_seed(plen))
    decoder = LlamaDecoder(model)
    cached = Cached(decoder, 8, plen + cfg.max_new_tokens)
    fast = decode(cached, prompts, cfg, STOP, torch.Generator().manual_seed(1))
    ref = decode(Recompute(model, prompts), prompts, cfg, STOP, torch.Generator().manual_seed(1))
    assert fast == ref
    assert all(not set(STOP) & set(row) and len(row) <= cfg.max_new_tokens for row in fast)


def test_rows_are_dropped_as_they_stop():
    """Rows stop at different steps, so `keep` (cache[:, :, rows]) runs mid-batch."""
    model, cfg = build(), gen_cfg(max_new_tokens=16)
    prompts = torch.randint(12, 300, (8, 5), generator=torch.Generator().manual_seed(5))
    cached = Cached(LlamaDecoder(model), 8, 5 + cfg.max_new_tokens)
    rows = decode(cached, prompts, cfg, STOP, torch.Generator().manual_seed(1))
    assert cached.cache.size(2) < 8 and any(len(r) < cfg.max_new_tokens for r in rows)


@pytest.mark.parametrize(
    "kw",
    [
        {"attention_bias": True},
        {"mlp_bias": True},
        {"hidden_act": "gelu"},
        {"pretraining_tp": 2},
        {"rope_parameters": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0}},
    ],
)
def test_supports_only_plain_llama(kw):
    assert LlamaDecoder.supports(tiny_config())
    assert not LlamaDecoder.supports(tiny_config(**kw))


def test_sampler_uses_the_fast_path():
    model = build()
    assert isinstance(sampler.fast_decoder(model), LlamaDecoder)
    assert sampler.fast_decoder(build(attention_bias=True)) is None
    cfg = gen_cfg(max_new_tokens=10)
    prompts = torch.randint(12, 300, (4, 3), generator=torch.Generator().manual_seed(0))
    rows = sampler.forward_factory(model, cfg, STOP)(prompts, torch.Generator().manual_seed(2))
    ref = decode(Recompute(model, prompts), prompts, cfg, STOP, torch.Generator().manual_seed(2))
    assert rows == ref

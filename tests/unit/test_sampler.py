"""The KV-cache decoder yields the same tokens as a straightforward full-recompute reference."""

from __future__ import annotations

import pytest
import torch

from synthloop.config import SELF_LOCAL, GenerateParams, ModelParams
from synthloop.models.fast import GPT2Decoder
from synthloop.models.lm import build_model
from synthloop.models.sampler import Cached, decode, pick, sample

EOS = 0


class Recompute:
    """Reference: run the HF model over the whole sequence every step (no cache)."""

    def __init__(self, model, prompts: torch.Tensor):
        self.model, self.seq = model, prompts[:, :0]

    def prefill(self, prompts: torch.Tensor) -> None:
        self.seq = prompts

    def step(self, tokens: torch.Tensor, pos: int) -> torch.Tensor:
        self.seq = torch.cat([self.seq, tokens[:, None]], 1)
        with torch.no_grad():
            return self.model(input_ids=self.seq).logits[:, -1].float()

    def keep(self, rows: torch.Tensor) -> None:
        self.seq = self.seq[rows]


@pytest.fixture(scope="module")
def model():
    cfg = ModelParams(source="scratch", arch="gpt2", n_layer=2, n_embd=32, n_head=2, context=64)
    return build_model(cfg, vocab_size=50, eos=EOS, seed=3).eval()


def gen_cfg(**kw) -> GenerateParams:
    base = dict(
        num_samples=8,
        max_new_tokens=20,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        prompt="bos",
        prompt_tokens=4,
        template=None,
        topics=None,
        batch_size=8,
    )
    return GenerateParams(**{**SELF_LOCAL, **base, **kw})


@pytest.mark.parametrize("kw", [{"top_k": 1}, {}, {"temperature": 0.7, "top_k": 10}, {"top_p": 0.8}])
def test_cached_decoder_matches_recompute(model, kw):
    cfg = gen_cfg(**kw)
    prompts = torch.tensor([[EOS, 5, 7, 9]] * 4 + [[EOS, 11, 3, 2]] * 4)
    decoder = GPT2Decoder(model)
    fast = decode(Cached(decoder, 8, 4 + cfg.max_new_tokens), prompts, cfg, EOS, torch.Generator().manual_seed(1))
    ref = decode(Recompute(model, prompts), prompts, cfg, EOS, torch.Generator().manual_seed(1))
    assert fast == ref
    assert all(EOS not in row and len(row) <= cfg.max_new_tokens for row in fast)


def test_logits_match_hf_forward(model):
    seq = torch.tensor([[EOS, 4, 8, 15, 16, 23, 42]])
    decoder = GPT2Decoder(model)
    cache = decoder.new_cache(1, seq.size(1))
    ours = torch.stack([decoder.step(seq[:, p], p, cache)[0] for p in range(seq.size(1))])
    with torch.no_grad():
        theirs = model(input_ids=seq).logits[0]
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_top_k_and_top_p_restrict_the_draw():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]]).repeat(500, 1)
    gen = torch.Generator().manual_seed(0)
    assert set(pick(logits, gen_cfg(top_k=2), gen).tolist()) <= {0, 1}
    probs = logits[0].softmax(-1)  # 0.64, 0.24, 0.09, ...
    assert probs[0] < 0.8 < probs[:2].sum()
    assert set(pick(logits, gen_cfg(top_p=0.8), gen).tolist()) <= {0, 1}


def test_sample_is_seeded_and_keeps_input_order(model):
    cfg = gen_cfg(max_new_tokens=12, batch_size=3)
    prompts = [[EOS], [EOS, 3], [EOS], [EOS, 3, 4], [EOS]]
    a = sample(model, prompts, cfg, EOS, seed=5, device=torch.device("cpu"))
    b = sample(model, prompts, cfg, EOS, seed=5, device=torch.device("cpu"))
    assert a == b and len(a) == 5
    assert sample(model, prompts, cfg, EOS, seed=6, device=torch.device("cpu")) != a


def test_sample_resumes_from_its_shards_without_resampling_them(model, tmp_path):
    cfg = gen_cfg(max_new_tokens=10, batch_size=2)
    prompts = [[EOS], [EOS, 3], [EOS], [EOS, 3], [EOS], [EOS]]
    plain = sample(model, prompts, cfg, EOS, seed=5, device=torch.device("cpu"))
    folder = tmp_path / "shards"
    assert sample(model, prompts, cfg, EOS, seed=5, device=torch.device("cpu"), shards=folder, settings="w1") == plain
    shards = sorted(folder.glob("shard-*.jsonl"))
    assert len(shards) == 3  # one per batch: [EOS] x4 -> 2 batches, [EOS, 3] x2 -> 1
    shards[1].unlink()
    stamps = {p: p.stat().st_mtime_ns for p in shards if p.exists()}

    assert sample(model, prompts, cfg, EOS, seed=5, device=torch.device("cpu"), shards=folder, settings="w1") == plain
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps and shards[1].exists()
    # other weights (settings) or another seed: the old shards are discarded, never reused
    assert sample(model, prompts, cfg, EOS, seed=6, device=torch.device("cpu"), shards=folder, settings="w1") != plain
    assert sample(model, prompts, cfg, EOS, seed=5, device=torch.device("cpu"), shards=folder, settings="w2") == plain

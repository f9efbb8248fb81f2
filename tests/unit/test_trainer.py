"""The training loop: seeded, and gradient accumulation gives the same update as one big batch."""

from __future__ import annotations

import torch

from synthloop.config import ModelParams, TrainParams
from synthloop.models.lm import build_model
from synthloop.models.trainer import train

MODEL = ModelParams(source="scratch", arch="gpt2", n_layer=1, n_embd=32, n_head=2, context=32)


def _cfg(**kw) -> TrainParams:
    base = dict(
        init="scratch",
        method="full",
        steps0=None,
        lora_rank=8,
        lora_alpha=16.0,
        lora_dropout=0.0,
        lora_targets=["q_proj"],
        steps=4,
        batch_size=8,
        micro_batch=8,
        block_size=16,
        lr=3e-3,
        warmup_steps=1,
        weight_decay=0.1,
        precision="fp32",
    )
    return TrainParams(**{**base, **kw})


def _run(cfg: TrainParams) -> torch.nn.Module:
    model = build_model(MODEL, vocab_size=40, eos=0, seed=1)
    stream = torch.randint(0, 40, (500,), generator=torch.Generator().manual_seed(2))
    stats = train(model, stream, cfg, seed=3, device=torch.device("cpu"))
    assert stats["train_tokens"] == cfg.steps * cfg.batch_size * cfg.block_size
    return model


def test_same_seed_same_weights():
    a, b = _run(_cfg()), _run(_cfg())
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_gradient_accumulation_matches_one_batch():
    whole, micro = _run(_cfg()), _run(_cfg(micro_batch=2))
    for pa, pb in zip(whole.parameters(), micro.parameters()):
        torch.testing.assert_close(pa, pb, atol=2e-5, rtol=1e-4)


def test_loss_goes_down_on_a_repeating_stream():
    model = build_model(MODEL, vocab_size=40, eos=0, seed=1)
    stream = torch.arange(10).repeat(60)
    stats = train(model, stream, _cfg(steps=40, lr=1e-2), seed=0, device=torch.device("cpu"))
    assert stats["train_loss"] < 1.0  # ln(40) = 3.7 at the start


def test_a_stopped_run_resumes_from_its_checkpoint_with_identical_weights(tmp_path):
    from synthloop.models.trainer import Checkpoints

    cfg = _cfg(steps=12, checkpoint_every=5)
    stream = torch.randint(0, 40, (500,), generator=torch.Generator().manual_seed(2))
    reference = build_model(MODEL, vocab_size=40, eos=0, seed=1)
    whole = train(reference, stream, cfg, seed=3, device=torch.device("cpu"))

    class Stop(Exception):
        pass

    def stop_at_10(step: int) -> None:
        if step == 10:
            raise Stop

    ckpt = Checkpoints(tmp_path / "ckpt.pt", key="inputs-1", every=5, after_save=stop_at_10)
    try:
        train(build_model(MODEL, vocab_size=40, eos=0, seed=1), stream, cfg, 3, torch.device("cpu"), ckpt=ckpt)
    except Stop:
        pass
    assert (tmp_path / "ckpt.pt").is_file()
    steps_seen = []
    resumed_model = build_model(MODEL, vocab_size=40, eos=0, seed=99)  # other init: the checkpoint overrides it
    again = Checkpoints(tmp_path / "ckpt.pt", key="inputs-1", every=5)
    resumed = train(
        resumed_model, stream, cfg, 3, torch.device("cpu"), on_log=lambda s, _: steps_seen.append(s), ckpt=again
    )
    assert steps_seen == [10, 11]  # only the steps after the checkpoint ran
    assert resumed == whole  # the losses of the first 10 steps came back with it
    for pa, pb in zip(reference.parameters(), resumed_model.parameters()):
        assert torch.equal(pa, pb)
    other = Checkpoints(tmp_path / "ckpt.pt", key="inputs-2", every=5)  # other inputs: start over
    assert other.restore(resumed_model, None, None, []) == 0

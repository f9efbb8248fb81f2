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
        budget="steps",
        epochs=1.0,
        lr0=None,
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


def test_a_truncated_documents_end_is_no_target():
    """lm.pack_open: the separator after a sample cut at max_new_tokens is masked out of the loss."""
    from synthloop.models.lm import pack_open, train_tokenizer

    tok = train_tokenizer(["once upon a time there was a king"] * 4, vocab_size=300)
    stream, skip = pack_open(tok, ["once upon", "a time", "a king"], [False, True, False])
    sep = tok.sep
    assert stream.tolist().count(sep) == 4 and skip.sum() == 1
    (at,) = skip.nonzero()[0].tolist()
    assert stream[at] == sep and stream[at - 1] != sep  # the end after "a time", not after the others
    assert pack_open(tok, ["once upon", "a king"], [False, False])[1] is None


def test_training_never_learns_a_skipped_target():
    """Every window's loss ignores the skipped targets: with all but one target skipped,
    the model learns only that one (a stream of 0s with 1s marked skip: it never predicts 1)."""
    stream = torch.zeros(400, dtype=torch.long)
    stream[1::2] = 1
    skip = stream == 1
    model = build_model(MODEL, vocab_size=40, eos=0, seed=1)
    train(model, stream, _cfg(steps=30, lr=1e-2), seed=3, device=torch.device("cpu"), skip=skip)
    with torch.no_grad():
        probs = model(input_ids=stream[None, :32]).logits.softmax(-1)[0]
    assert float(probs[:, 0].mean()) > 0.9 and float(probs[:, 1].mean()) < 0.05


def test_budget_epochs_sets_steps_from_the_stream():
    cfg = _cfg(budget="epochs", epochs=2.0, steps=4, warmup_steps=1)
    assert cfg.at(1, stream_tokens=8 * 16 * 10).steps == 20  # 2 passes over 10 batches' worth
    assert cfg.at(1, stream_tokens=10).steps == 2  # at least warmup + 1
    assert _cfg(steps=4).at(1, stream_tokens=10**6).steps == 4  # budget steps: the stream does not matter
    assert _cfg(budget="epochs", steps0=7).at(0, stream_tokens=10**6).steps == 7  # steps0 wins at generation 0
    assert _cfg(lr0=0.01).at(0).lr == 0.01 and _cfg(lr0=0.01).at(1).lr == 3e-3  # so does lr0

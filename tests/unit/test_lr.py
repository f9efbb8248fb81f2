"""trainer.lr_at: linear warmup to lr, cosine decay to lr / 10."""

from __future__ import annotations

import pytest

from synthloop.config import TrainParams
from synthloop.models.trainer import lr_at


@pytest.fixture
def cfg(tiny):
    return TrainParams(**{**tiny.train.model_dump(), "steps": 100, "warmup_steps": 10, "lr": 0.01})


def test_warmup_is_linear_up_to_lr(cfg):
    warm = [lr_at(s, cfg) for s in range(cfg.warmup_steps)]
    steps = range(cfg.warmup_steps)
    assert warm == pytest.approx([cfg.lr * (s + 1) / cfg.warmup_steps for s in steps])
    assert warm[-1] == pytest.approx(cfg.lr)


def test_peak_at_end_of_warmup_then_decays(cfg):
    lrs = [lr_at(s, cfg) for s in range(cfg.steps)]
    assert max(lrs) == pytest.approx(cfg.lr)
    assert lr_at(cfg.warmup_steps, cfg) == pytest.approx(cfg.lr)
    decay = lrs[cfg.warmup_steps :]
    assert all(a >= b for a, b in zip(decay, decay[1:]))
    assert min(lrs[cfg.warmup_steps :]) >= cfg.lr / 10 - 1e-12


def test_no_warmup_starts_at_peak(cfg):
    cfg = cfg.model_copy(update={"warmup_steps": 0})
    assert lr_at(0, cfg) == pytest.approx(cfg.lr)


@pytest.mark.parametrize("steps, warmup", [(100, 10), (30, 5)])
def test_ends_at_a_tenth_at_the_last_step(cfg, steps, warmup):
    cfg = cfg.model_copy(update={"steps": steps, "warmup_steps": warmup})
    assert lr_at(cfg.steps - 1, cfg) == pytest.approx(cfg.lr / 10)

"""What the runner hands every stage: params, file layout, generation, seed, a metric sink."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from random import Random

from ..config import Params
from ..layout import Layout


def derive_seed(seed: int, *parts: object) -> int:
    """A stable 31-bit seed for one use (stage, generation, purpose) of the loop seed."""
    digest = hashlib.sha256(":".join(map(str, (seed, *parts))).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


@dataclass(frozen=True)
class StageContext:
    params: Params
    layout: Layout
    gen: int
    log_metric: Callable[[str, float, int], None]

    def seed(self, *purpose: object) -> int:
        return derive_seed(self.params.loop.seed, *purpose, self.gen)

    def rng(self, *purpose: object) -> Random:
        return Random(self.seed(*purpose))

"""What the runner hands every stage: params, file layout, generation, seed, a metric sink."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from random import Random

from ..config import Params
from ..keys import derive_seed
from ..layout import Layout


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

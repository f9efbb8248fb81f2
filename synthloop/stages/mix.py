"""mix: build generation k's training set from real and kept synthetic documents.

Strategies (train_size = N documents):
  replace               N kept synthetic documents of this generation (all if fewer)
  accumulate            the fixed real base (N real) + every kept synthetic document so far
  accumulate_subsample  N drawn from that same growing pool (removes the extra-data confound)
  fixed_fraction        round(r*N) real, resampled each generation, + the rest synthetic
Generation 0 trains on the real base alone. Rows keep their provenance.
"""

from __future__ import annotations

from random import Random

from .. import faults, io
from ..config import MixParams
from ..metrics.text import words
from ..records import Row, share
from .context import StageContext
from .table import stage_id


def draw(rows: list[Row], n: int, rng: Random) -> list[Row]:
    """n rows without replacement (all of them, shuffled, when there are fewer)."""
    return rng.sample(rows, n) if n < len(rows) else rng.sample(rows, len(rows))


def mix_rows(
    cfg: MixParams, real_base: list[Row], real_all: list[Row], kept: list[Row], pool: list[Row], rng: Random
) -> list[Row]:
    """The training rows for a generation >= 1; `pool` already includes `kept`."""
    n = cfg.train_size
    if cfg.strategy == "replace":
        return draw(kept, n, rng)
    if cfg.strategy == "accumulate":
        return draw(real_base + pool, len(real_base) + len(pool), rng)
    if cfg.strategy == "accumulate_subsample":
        return draw(real_base + pool, n, rng)
    n_real = round(cfg.real_fraction * n)
    return draw(draw(real_all, n_real, rng) + draw(kept, n - n_real, rng), n, rng)


def run(ctx: StageContext) -> dict[str, float]:
    p, lay, k = ctx.params, ctx.layout, ctx.gen
    real_all = io.read_rows(lay.real_train)
    real_base = draw(real_all, p.mix.train_size, Random(ctx.params.loop.seed))  # same every generation
    if k == 0:
        kept, pool, train = [], [], real_base
    else:
        kept = [r for r in io.read_rows(lay.graded(k)) if r["kept"]]
        pool = io.read_rows(lay.pool(k - 1)) + kept
        train = mix_rows(p.mix, real_base, real_all, kept, pool, ctx.rng("mix"))
    io.write_rows(lay.pool(k), pool)
    faults.point("mid:" + stage_id("mix", k))  # pool written, training set not yet
    io.write_rows(lay.train_set(k), train)
    n_words = {src: sum(len(words(r["text"])) for r in train if r["source"] == src) for src in ("real", "synthetic")}
    stats = {
        "n_train": len(train),
        "n_real": sum(r["source"] == "real" for r in train),
        "synthetic_share": share(train, "synthetic"),
        "pool_size": len(pool),
        # documents differ in length (whole real tales vs capped samples): the share by words
        "synthetic_word_share": n_words["synthetic"] / max(1, sum(n_words.values())),
    }
    io.write_json(lay.mix_stats(k), stats)
    return stats

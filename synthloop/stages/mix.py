"""mix: build generation k's training set from real and kept synthetic documents.

Strategies (train_size = N, in mix.unit: documents, or tokens of the loop's tokenizer):
  replace               N of kept synthetic documents of this generation (all if fewer)
  accumulate            the fixed real base (N real) + every kept synthetic document so far
  accumulate_subsample  N drawn from that same growing pool (removes the extra-data confound); with
                        mix.select = verifier, drawn by weight P(real)^b instead of uniformly
  fixed_fraction        r*N real, resampled each generation, + the rest synthetic
  dilution              the control of fixed_fraction: its r*N real alone (train cuts each batch to r)
Generation 0 trains on real data alone: mix.train_size0 of it (null = the real base). By tokens, a
draw takes whole documents until it holds N tokens (the last one may pass N). Rows keep their provenance.
"""

from __future__ import annotations

from collections.abc import Callable
from random import Random

from .. import faults, io
from ..config import MixParams
from ..metrics.text import words
from ..models import lm
from ..records import Row, share
from .context import StageContext
from .table import stage_id

Size = Callable[[Row], int]  # a row's size in mix.unit


def draw(rows: list[Row], n: int, rng: Random, size: Size | None = None) -> list[Row]:
    """Rows without replacement until they hold n (documents, or `size` units); all, shuffled, when
    there are fewer. By documents it is rng.sample(rows, n)."""
    if n <= 0:
        return []
    if size is None:
        return rng.sample(rows, min(n, len(rows)))
    return take(rng.sample(rows, len(rows)), n, size)


def take(rows: list[Row], n: int, size: Size | None = None) -> list[Row]:
    """The first rows that hold n (documents, or `size` units: the last one may pass n)."""
    if size is None:
        return rows[:n]
    out, total = [], 0
    for row in rows:
        if total >= n:
            break
        out.append(row)
        total += size(row)
    return out


def weighted_draw(rows: list[Row], weights: list[float], n: int, rng: Random, size: Size | None = None) -> list[Row]:
    """Rows without replacement, each next one picked with probability proportional to its weight
    (Efraimidis-Spirakis keys u^(1/w)), until they hold n; weight 0 comes last."""
    keys = [rng.random() ** (1 / w) if w > 0 else -1.0 for w in weights]
    return take([rows[i] for i in sorted(range(len(rows)), key=lambda i: -keys[i])], n, size)


def mix_rows(
    cfg: MixParams,
    real_base: list[Row],
    real_all: list[Row],
    kept: list[Row],
    pool: list[Row],
    rng: Random,
    size: Size | None = None,
    weights: list[float] | None = None,
) -> list[Row]:
    """The training rows for a generation >= 1; `pool` already includes `kept`; `weights`: one per
    row of real_base + pool (mix.select)."""
    n = cfg.train_size
    if cfg.strategy == "replace":
        return draw(kept, n, rng, size)
    if cfg.strategy == "accumulate":
        return shuffled(real_base + pool, rng)
    if cfg.strategy == "accumulate_subsample":
        if weights is not None:
            return shuffled(weighted_draw(real_base + pool, weights, n, rng, size), rng)
        return draw(real_base + pool, n, rng, size)
    real = draw(real_all, round(cfg.real_fraction * n), rng, size)
    if cfg.strategy == "dilution":
        return real
    rest = n - (len(real) if size is None else sum(map(size, real)))
    return shuffled(real + draw(kept, rest, rng, size), rng)


def select_weights(ctx: StageContext, rows: list[Row]) -> list[float]:
    """P(real)^mix.select_power of each row from grade's verifier (trained once per loop on real
    documents vs generation-0 samples), every text cut to sample length and its origin not shown."""
    from ..graders.base import GradeEnv
    from ..graders.verifier import VerifierGrader

    env = GradeEnv(ctx)
    p_real = VerifierGrader(env).p_real(env.cut([r["text"] for r in rows]))
    return [float(x) ** ctx.params.mix.select_power for x in p_real]


def shuffled(rows: list[Row], rng: Random) -> list[Row]:
    return rng.sample(rows, len(rows))


def run(ctx: StageContext) -> dict[str, float]:
    p, lay, k = ctx.params, ctx.layout, ctx.gen
    size = None
    if p.mix.unit == "tokens":
        tok = lm.load_tokenizer(lay.tokenizer)
        size = lambda row: len(tok.backend.encode(row["text"], add_special_tokens=False).ids) + 1  # noqa: E731  +SEP
    real_all = io.read_rows(lay.real_train)
    real_base = draw(real_all, p.mix.train_size, Random(ctx.params.loop.seed), size)  # same every generation
    if k == 0:
        kept, pool = [], []
        first = p.mix.train_size0
        train = real_base if first is None else draw(real_all, first, Random(ctx.params.loop.seed), size)
    else:
        kept = [r for r in io.read_rows(lay.graded(k)) if r["kept"]]
        pool = io.read_rows(lay.pool(k - 1)) + kept
        weights = select_weights(ctx, real_base + pool) if p.mix.select == "verifier" else None
        train = mix_rows(p.mix, real_base, real_all, kept, pool, ctx.rng("mix"), size, weights)
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
        "real_words": n_words["real"],
        "synthetic_words": n_words["synthetic"],
    }
    if size is not None:
        n_tokens = {src: sum(size(r) for r in train if r["source"] == src) for src in ("real", "synthetic")}
        stats |= {
            "real_tokens": n_tokens["real"],
            "synthetic_tokens": n_tokens["synthetic"],
            "synthetic_token_share": n_tokens["synthetic"] / max(1, sum(n_tokens.values())),
        }
    io.write_json(lay.mix_stats(k), stats)
    return stats

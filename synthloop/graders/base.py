"""What every grader is, and what the graders of one grade stage share.

A grader is a class with a `name` (its entry in `grade.steps`) and

- `grade(texts) -> Graded`: score the samples it is shown, fit its keep rule once
  (on those scores, or on real text), and decide each sample with that rule;
- for graders with an `audit_key`: `score(texts)` gives that score for other texts
  (the audit's real documents) and `keep(texts, values, rule)` the probability that
  the fitted rule keeps them; `rules.preference(rule, values)` orients the score
  as "higher = the grader likes it more" (graders/audit.py).

Nothing is stored on the grader between calls: the fitted rule travels in `Graded`.
Adding a grader: a module with its class, one line in graders/__init__.py, its params
(grade.<name>_*) in config.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from random import Random
from typing import ClassVar

from .. import io
from ..keys import derive_seed
from ..models import lm
from ..stages.context import StageContext
from . import rules

Scores = dict[str, list[float | None]]


@dataclass(frozen=True)
class Graded:
    scores: Scores  # columns written into each row's `scores`
    reasons: list[str | None]  # drop reason per sample (None = kept)
    rule: rules.Rule | None = None  # the fitted keep rule (audited graders)
    stats: dict[str, float] = field(default_factory=dict)


class Grader:
    name: ClassVar[str] = ""
    audit_key: ClassVar[str | None] = None  # the audited score column (None: not audited)

    def __init__(self, env: GradeEnv):
        self.env, self.cfg = env, env.cfg

    def grade(self, texts: list[str]) -> Graded:
        raise NotImplementedError

    def score(self, texts: list[str]) -> list[float | None]:
        """The audited score of other texts (the audit's real documents)."""
        raise NotImplementedError

    def keep(self, texts: list[str], values: list[float | None], rule: rules.Rule) -> list[float]:
        return rules.keep_prob(rule, values)


def graded(scores: Scores, column: str, rule: rules.Rule, **stats: float) -> Graded:
    """Decide every sample by `rule` on `scores[column]`."""
    return Graded(scores, rules.decide(rule, scores[column]), rule, stats)


class GradeEnv:
    """What the graders of one grade stage share, each loaded on first use."""

    def __init__(self, ctx: StageContext):
        self.ctx, self.p, self.lay, self.k = ctx, ctx.params, ctx.layout, ctx.gen
        self.cfg = ctx.params.grade
        self._models: dict[int, object] = {}
        self._ppl: dict[tuple[int, str], list[float | None]] = {}

    @cached_property
    def device(self):
        return lm.setup_torch(self.p.compute)

    @cached_property
    def tok(self):
        return lm.load_tokenizer(self.lay.tokenizer)

    def model(self, g: int):
        if g not in self._models:
            self._models[g] = lm.load_model(self.lay.model(g), self.device)
        return self._models[g]

    def ppl(self, g: int, texts: list[str], cache: str | None = None) -> list[float | None]:
        """Perplexity of each text under model g given a leading end-of-text (None for an empty text)."""
        if cache and (g, cache) in self._ppl:
            return self._ppl[(g, cache)]
        if not texts:
            return []
        nll = lm.sequence_nll(
            self.model(g), lm.encode(self.tok, texts), lm.eos_id(self.tok), self.p.generate.batch_size, self.device
        )
        out = [math.exp(s / n) if n else None for s, n in nll]
        if cache:
            self._ppl[(g, cache)] = out
        return out

    def cut(self, texts: list[str]) -> list[str]:
        """Each text's first generate.max_new_tokens tokens, as its original characters:
        real documents at the length of a sample."""
        n = self.p.generate.max_new_tokens
        out = []
        for text, enc in zip(texts, self.tok.backend.encode_batch(texts, add_special_tokens=False)):
            out.append(text if len(enc.ids) <= n else text[: enc.offsets[n - 1][1]])
        return out

    def cut_to(self, text: str, n: int) -> str:
        """`text`'s first n tokens, as its original characters (all of it when it is shorter)."""
        enc = self.tok.backend.encode(text, add_special_tokens=False)
        return text if len(enc.ids) <= n else text[: enc.offsets[n - 1][1]] if n > 0 else ""

    @cached_property
    def test_texts(self) -> list[str]:
        return [r["text"] for r in io.read_rows(self.lay.real_test)]

    @cached_property
    def audit_texts(self) -> list[str]:
        """grade.audit_size real test documents cut to sample length: the same ones every generation."""
        docs = self.test_texts
        rng = Random(derive_seed(self.p.loop.seed, "grade-audit"))
        pick = sorted(rng.sample(range(len(docs)), min(self.cfg.audit_size, len(docs))))
        return self.cut([docs[i] for i in pick])

    def earlier_kept(self) -> list[str]:
        """Kept samples of generations 1..k-1 (what dedup compares against besides this generation)."""
        texts = []
        for j in range(1, self.k):
            path = self.lay.graded(j)
            if not path.is_file():
                raise io.DataError(
                    f"{path}: missing; grade generation {j} first (dedup compares each "
                    "generation with the kept samples of the earlier ones)"
                )
            texts += [r["text"] for r in io.read_rows(path) if r["kept"]]
        return texts

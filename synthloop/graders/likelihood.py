"""Likelihood graders: a sample's perplexity under the model that wrote it (`self`) or
under the frozen generation-0 model, kept inside real text's band (`reference`)."""

from __future__ import annotations

from .. import io
from . import rules
from .base import Grader, graded
from .rules import Rule


class SelfGrader(Grader):
    """Perplexity under generation k-1's model, kept by grade.self_rule: the model that wrote the
    sample, or (generate.source: teacher) the student the teacher writes for."""

    name, audit_key = "self", "self_ppl"

    def fit(self, ppl: list[float | None]) -> Rule:
        c, reason = self.cfg, f"self_{self.cfg.self_rule}"
        if c.self_rule == "threshold":
            return Rule(high=c.self_max_ppl, above=reason, prefer="lower")
        if c.self_rule == "lowest":
            return Rule(high=rules.rank_cut(ppl, c.self_fraction, highest=False), above=reason, prefer="lower")
        if c.self_rule == "highest":
            return Rule(low=rules.rank_cut(ppl, c.self_fraction, highest=True), below=reason, prefer="higher")
        if c.self_rule == "band" and any(v is not None for v in ppl):
            low, high = rules.quantiles(ppl, c.self_band_low, c.self_band_high)
            return Rule(low, high, below=reason, above=reason, prefer="centre", centre=rules.log_median(ppl))
        return Rule(prefer="centre" if c.self_rule == "band" else "lower")  # none: the self-grading convention

    def grade(self, texts):
        ppl = self.env.ppl(self.env.k - 1, texts)
        return graded({"self_ppl": ppl}, "self_ppl", self.fit(ppl))

    def score(self, texts):
        return self.env.ppl(self.env.k - 1, texts, cache="audit")


class ReferenceGrader(Grader):
    """Perplexity under the frozen generation-0 model; band: kept within the real audit documents' quantiles."""

    name, audit_key = "reference", "ref_ppl"

    def fit(self) -> Rule:
        real = [v for v in self.score(self.env.audit_texts) if v is not None]
        if self.cfg.reference_rule == "none":
            return Rule(prefer="centre", centre=rules.log_median(real))
        if not real:
            raise io.DataError("grade reference: no real audit document has a token; raise grade.audit_size")
        centre = rules.log_median(real)
        low, high = rules.quantiles(real, self.cfg.reference_low, self.cfg.reference_high)
        return Rule(low, high, below="reference_low", above="reference_high", prefer="centre", centre=centre)

    def grade(self, texts):
        rule = self.fit()
        stats = (
            {}
            if self.cfg.reference_rule == "none"
            else {"reference_band_low": rule.low, "reference_band_high": rule.high}
        )
        return graded({"ref_ppl": self.env.ppl(0, texts)}, "ref_ppl", rule, **stats)

    def score(self, texts):
        return self.env.ppl(0, texts, cache="audit")

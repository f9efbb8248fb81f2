"""The graders behind `grade.steps`, one class each, and the lazily loaded things they share.

Every step has the same shape, so the grade stage can run any list of them in any order:

- `run(texts) -> (scores, reasons)`: score columns for the samples it is shown
  (written to each row's `scores`) and a drop reason per sample (None = kept). It
  also fixes the rule's cut-offs (a quantile, the k-th best score, ...).
- `audit(texts) -> (scores, keep)`: the audited score of real documents and
  whether the rule, with the cut-offs fixed in `run`, would keep them (a float in
  [0, 1]: the verifier's resampling keeps with a probability).
- `prefer(values)`: the audited score oriented so that higher = the grader likes it
  more (see flows/graders/audit.py). Steps with `audit_key = None` (dedup,
  decontaminate) are not audited: their score measures overlap, not quality.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict
from functools import cached_property
from random import Random

import numpy as np

from .. import io
from ..config import GRADERS, GenerateParams
from ..metrics.text import repetition
from ..models import lm
from ..stages.context import StageContext, derive_seed
from . import rules, verifier
from .decontam import decontaminate
from .dedup import dedup
from .filters import filter_reason, garbage

Scores = dict[str, list[float | None]]


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
        nll = lm.sequence_nll(self.model(g), lm.encode(self.tok, texts), lm.eos_id(self.tok),
                              self.p.generate.batch_size, self.device)
        out = [math.exp(s / n) if n else None for s, n in nll]
        if cache:
            self._ppl[(g, cache)] = out
        return out

    def cut(self, texts: list[str]) -> list[str]:
        """Each text's first generate.max_new_tokens tokens, as its original characters:
        real documents at the length of a sample."""
        n = self.p.generate.max_new_tokens
        out = []
        for text, enc in zip(texts, self.tok.encode_batch(texts)):
            out.append(text if len(enc.ids) <= n else text[:enc.offsets[n - 1][1]])
        return out

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
                raise io.DataError(f"{path}: missing; grade generation {j} first (dedup compares each "
                                   "generation with the kept samples of the earlier ones)")
            texts += [r["text"] for r in io.read_rows(path) if r["kept"]]
        return texts


class Step:
    name: str = ""
    audit_key: str | None = None
    stats: dict[str, float]

    def __init__(self, env: GradeEnv):
        self.env, self.cfg, self.stats = env, env.cfg, {}

    def run(self, texts: list[str]) -> tuple[Scores, list[str | None]]:
        raise NotImplementedError

    def audit(self, texts: list[str]) -> tuple[list[float | None], list[float]]:
        raise NotImplementedError

    def prefer(self, values: np.ndarray) -> np.ndarray:
        return values


class FilterStep(Step):
    """Length, repetition and garbage characters; audited on the repetition share."""
    name, audit_key = "filters", "repetition"

    def run(self, texts):
        scores = {"repetition": [repetition(t) for t in texts], "garbage": [garbage(t) for t in texts]}
        return scores, [filter_reason(t, self.cfg) for t in texts]

    def audit(self, texts):
        return [repetition(t) for t in texts], [float(filter_reason(t, self.cfg) is None) for t in texts]

    def prefer(self, values):
        return -values


class DedupStep(Step):
    name = "dedup"

    def run(self, texts):
        c = self.cfg
        reasons, sims = dedup(texts, self.env.earlier_kept(), c.dedup_threshold, c.dedup_num_perm, c.dedup_shingle)
        return {"dedup_sim": sims}, reasons


class DecontamStep(Step):
    name = "decontaminate"

    def run(self, texts):
        c = self.cfg
        reasons, shares = decontaminate(texts, self.env.test_texts, c.decontam_ngram, c.decontam_threshold)
        return {"contamination": shares}, reasons


class SelfStep(Step):
    """Perplexity under the model that wrote the sample (generation k-1)."""
    name, audit_key = "self", "self_ppl"

    def run(self, texts):
        ppl = self.env.ppl(self.env.k - 1, texts)
        scored = [i for i, v in enumerate(ppl) if v is not None]
        values = [ppl[i] for i in scored]
        keep = rules.self_keep(values, self.cfg)
        self.interval = rules.self_interval(values, self.cfg)
        self.centre = float(np.median(np.log(values))) if values else 0.0
        reasons: list[str | None] = [None] * len(texts)
        for i, kept in zip(scored, keep):
            reasons[i] = None if kept else f"self_{self.cfg.self_rule}"
        return {"self_ppl": ppl}, reasons

    def audit(self, texts):
        ppl = self.env.ppl(self.env.k - 1, texts, cache="audit")
        return ppl, [float(v is None or rules.inside([v], self.interval)[0]) for v in ppl]

    def prefer(self, values):
        if self.cfg.self_rule == "highest":
            return values
        if self.cfg.self_rule == "band":
            return -np.abs(np.log(values) - self.centre)
        return -values  # none, threshold, lowest: the self-grading convention, likelier = better


class ReferenceStep(Step):
    """Perplexity under the frozen generation-0 model, kept inside real text's band."""
    name, audit_key = "reference", "ref_ppl"

    @cached_property
    def real(self) -> list[float]:
        values = [v for v in self.env.ppl(0, self.env.audit_texts, cache="audit") if v is not None]
        if not values:
            raise io.DataError("grade reference: no real audit document has a token; raise grade.audit_size")
        return values

    def run(self, texts):
        ppl = self.env.ppl(0, texts)
        self.band = None
        if self.cfg.reference_rule == "none":
            return {"ref_ppl": ppl}, [None] * len(texts)
        self.band = rules.band(self.real, self.cfg.reference_low, self.cfg.reference_high)
        self.stats = {"reference_band_low": self.band[0], "reference_band_high": self.band[1]}
        return {"ref_ppl": ppl}, rules.band_reasons(ppl, self.band, "reference_low", "reference_high")

    def audit(self, texts):
        ppl = self.env.ppl(0, texts, cache="audit")
        if self.band is None:
            return ppl, [1.0] * len(ppl)
        return ppl, [float(r is None) for r in rules.band_reasons(ppl, self.band, "low", "high")]

    def prefer(self, values):
        return -np.abs(np.log(values) - float(np.median(np.log(self.real))))


class VerifierStep(Step):
    """P(real) from a TF-IDF + logistic-regression classifier, trained once per loop."""
    name, audit_key = "verifier", "verifier_p"

    @cached_property
    def model(self) -> verifier.Verifier:
        env, p = self.env, self.env.p
        model0 = env.lay.model(0) / "model.safetensors"
        if not model0.is_file():
            raise io.DataError(f"{model0}: missing; the verifier trains on generation-0 samples: "
                               "run the train stage for generation 0 first")
        inputs = {"real_train_md5": io.md5_file(env.lay.real_train), "model0_md5": io.md5_file(model0),
                  "seed": p.loop.seed, "train_size": self.cfg.verifier_train_size,
                  "max_new_tokens": p.generate.max_new_tokens, "batch_size": p.generate.batch_size,
                  "threads": p.compute.threads, "format": verifier.FORMAT}
        key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
        found = verifier.load(env.lay.verifier, key)  # trained once per loop: reused while its inputs match
        if found is not None:
            return found
        real, synthetic = self._training_texts()
        fitted = verifier.fit(real, synthetic, derive_seed(p.loop.seed, "verifier"))
        verifier.save(fitted, env.lay.verifier, key)
        return fitted

    def _training_texts(self) -> tuple[list[str], list[str]]:
        env, p, n = self.env, self.env.p, self.cfg.verifier_train_size
        docs = [r["text"] for r in io.read_rows(env.lay.real_train)]
        rng = Random(derive_seed(p.loop.seed, "verifier-real"))
        real = env.cut([docs[i] for i in sorted(rng.sample(range(len(docs)), min(n, len(docs))))])
        from ..models.sampler import sample

        cfg: GenerateParams = p.generate.model_copy(update={"num_samples": n, "temperature": 1.0,
                                                            "top_k": 0, "top_p": 1.0})
        eos = lm.eos_id(env.tok)
        ids = sample(env.model(0), [[eos]] * n, cfg, eos, derive_seed(p.loop.seed, "verifier-samples"),
                     env.device, desc="verifier: gen-0 samples")
        synthetic = [t for t in lm.decode(env.tok, ids) if t.strip()]
        return [t for t in real if t.strip()], synthetic

    def run(self, texts):
        p = self.model.score(texts).tolist()
        self.stats = {f"verifier_{k}": float(v) for k, v in self.model.info.items()
                      if k in ("train_accuracy", "n_features")}
        rule = self.cfg.verifier_rule
        keep, self.cut, self.scale = rules.verifier_keep(p, rule, self.cfg.verifier_fraction,
                                                         self.env.ctx.seed("grade-verifier"))
        return {"verifier_p": p}, [None if k else f"verifier_{rule}" for k in keep]

    def audit(self, texts):
        p = self.model.score(texts).tolist()
        return p, rules.verifier_real_keep(p, self.cfg.verifier_rule, self.cut, self.scale)


class JudgeStep(Step):
    """An LLM judge's 1-10 score (flows/graders/judge.py), resumable shard by shard."""
    name, audit_key = "judge", "judge_score"

    @cached_property
    def judge(self):
        try:
            from .judge import RUBRIC_VERSION, make_judge
        except ImportError as exc:
            raise io.DataError(f"grade.steps has 'judge' but the judge module cannot be loaded ({exc})") from None
        c, root = self.cfg, self.env.lay.root
        folder = self.env.lay.model(0) if c.judge_model_dir == GEN0 else root / (c.judge_model_dir or "")
        model_dir = str(folder.resolve()) if c.judge_model_dir else None
        try:
            judge = make_judge(c.judge_backend, model_dir=model_dir, mode=c.judge_mode, base_url=c.judge_base_url,
                               model=c.judge_model, route=c.judge_route, api_key_env=c.judge_api_key_env,
                               timeout_s=c.judge_timeout_s, concurrency=c.judge_concurrency,
                               retries=c.judge_retries, device=self.env.p.compute.device)
        except ValueError as exc:
            raise io.DataError(str(exc)) from None
        # what decides a verdict besides the text: cached shards are reused only when it matches
        # (for a local model its weights too: a retrained gen-0 model at the same path is another judge)
        digest = io.weights_md5(folder) if c.judge_model_dir else None
        self.settings = "|".join(map(str, (RUBRIC_VERSION, c.judge_backend, c.judge_mode, model_dir, digest,
                                           c.judge_base_url, c.judge_model, c.judge_route)))
        return judge

    def verdicts(self, texts: list[str], part: str) -> list[dict]:
        from ..shards import score_in_shards

        judge = self.judge
        return score_in_shards(texts, lambda chunk: [asdict(v) for v in judge.judge(chunk)],
                               self.env.lay.judge_shards(self.env.k) / part, JUDGE_SHARD,
                               f"gen {self.env.k}: judge {part}", self.settings)

    def run(self, texts):
        c = self.cfg
        verdicts = self.verdicts(texts, "samples")
        scores = [v["score"] for v in verdicts]
        reasons, self.cut = rules.judge_reasons(scores, c.judge_rule, c.judge_min_score, c.judge_fraction,
                                                c.judge_unparsed)
        self.stats = {f"judge_{s}": float(sum(v["status"] == s for v in verdicts)) for s in ("ok", "unparsed", "error")}
        return {"judge_score": scores}, reasons

    def audit(self, texts):
        scores = [v["score"] for v in self.verdicts(texts, "audit")]
        reasons, _ = rules.judge_reasons(scores, "threshold", self.cut, 1.0, self.cfg.judge_unparsed)
        return scores, [float(r is None) for r in reasons]


JUDGE_SHARD = 32  # samples per resumable shard of judge verdicts
GEN0 = "gen0"     # grade.judge_model_dir: this loop's generation-0 model
STEPS: dict[str, type[Step]] = {s.name: s for s in (FilterStep, DedupStep, DecontamStep, SelfStep, ReferenceStep,
                                                    VerifierStep, JudgeStep)}
assert tuple(STEPS) == GRADERS, "flows.config.GRADERS and flows.graders.steps.STEPS disagree"

"""A real-vs-synthetic verifier: TF-IDF word 1-2-grams + logistic regression (scikit-learn).

Trained once per loop on real training documents (cut to sample length) against
generation-0 samples, it scores p = P(real | text). The fitted model is stored as
plain JSON (vocabulary, idf weights, coefficients, intercept), never pickled, and
scored by rebuilding the TF-IDF transform from those numbers, so a stored verifier
gives exactly the probabilities of the fitted one (a unit test checks it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from random import Random
from typing import Any

import numpy as np

from .. import io
from ..keys import content_key, derive_seed
from ..models import lm
from . import rules
from .base import Grader, graded
from .rules import Rule

FORMAT = "synthloop-verifier/1"
# TfidfVectorizer settings; also stored in the JSON so a file always scores as it was fitted
ANALYZER = {"ngram_range": [1, 2], "token_pattern": r"(?u)\b\w+\b", "lowercase": True, "sublinear_tf": True}
MIN_DF, MAX_FEATURES, C = 2, 50_000, 1.0


@dataclass(frozen=True)
class Verifier:
    vocabulary: dict[str, int]
    idf: np.ndarray
    coef: np.ndarray
    intercept: float
    analyzer: dict[str, Any] = field(default_factory=lambda: dict(ANALYZER))
    info: dict[str, Any] = field(default_factory=dict)

    def features(self, texts: list[str]):
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.preprocessing import normalize

        counts = (
            CountVectorizer(
                vocabulary=self.vocabulary,
                ngram_range=tuple(self.analyzer["ngram_range"]),
                token_pattern=self.analyzer["token_pattern"],
                lowercase=self.analyzer["lowercase"],
            )
            .transform(texts)
            .astype(np.float64)
        )
        if self.analyzer["sublinear_tf"]:
            np.log(counts.data, counts.data)
            counts.data += 1
        return normalize(counts.multiply(self.idf).tocsr(), norm="l2")

    def score(self, texts: list[str]) -> np.ndarray:
        """P(real) of each text."""
        from scipy.special import expit

        if not texts:
            return np.zeros(0)
        return expit(self.features(texts) @ self.coef + self.intercept)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "analyzer": self.analyzer,
            "vocabulary": self.vocabulary,
            "idf": self.idf.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept,
            "info": self.info,
        }

    @classmethod
    def from_json(cls, obj: Any, source: str = "verifier") -> Verifier:
        try:
            if obj["format"] != FORMAT:
                raise ValueError(f"format {obj['format']!r}, expected {FORMAT!r}")
            vocab = {str(k): int(v) for k, v in obj["vocabulary"].items()}
            idf, coef = np.asarray(obj["idf"], dtype=np.float64), np.asarray(obj["coef"], dtype=np.float64)
            if not (len(vocab) == len(idf) == len(coef)) or sorted(vocab.values()) != list(range(len(vocab))):
                raise ValueError("vocabulary, idf and coef do not line up")
            return cls(vocab, idf, coef, float(obj["intercept"]), dict(obj["analyzer"]), dict(obj.get("info", {})))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise io.DataError(f"{source}: not a synthloop verifier ({exc}); delete it to retrain") from None


def fit(real: list[str], synthetic: list[str], seed: int) -> Verifier:
    """Fit on real (label 1) vs synthetic (label 0) texts."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    if len(real) < 2 or len(synthetic) < 2:
        raise io.DataError(
            f"verifier: needs at least 2 real and 2 synthetic texts, got {len(real)} and "
            f"{len(synthetic)}; raise grade.verifier_train_size"
        )
    texts, labels = real + synthetic, np.array([1] * len(real) + [0] * len(synthetic))
    vec = TfidfVectorizer(
        ngram_range=tuple(ANALYZER["ngram_range"]),
        token_pattern=ANALYZER["token_pattern"],
        lowercase=ANALYZER["lowercase"],
        sublinear_tf=ANALYZER["sublinear_tf"],
        min_df=MIN_DF if len(texts) >= 20 else 1,
        max_features=MAX_FEATURES,
        dtype=np.float64,
    )
    try:
        vec.fit(texts)
    except ValueError:  # empty vocabulary: no text has a word
        raise io.DataError(
            "verifier: the training texts have no words; check grade.verifier_train_size and the generation-0 samples"
        ) from None
    vocab = {term: int(i) for term, i in vec.vocabulary_.items()}
    untrained = Verifier(vocab, vec.idf_.astype(np.float64), np.zeros(len(vocab)), 0.0)
    x = untrained.features(texts)
    clf = LogisticRegression(C=C, max_iter=2000, random_state=seed).fit(x, labels)
    model = Verifier(vocab, untrained.idf, clf.coef_[0].astype(np.float64), float(clf.intercept_[0]))
    p = model.score(texts)
    info = {
        "n_real": len(real),
        "n_synthetic": len(synthetic),
        "n_features": len(vocab),
        "train_accuracy": float(np.mean((p >= 0.5) == labels)),
        "C": C,
        "min_df": vec.min_df,
    }
    return Verifier(model.vocabulary, model.idf, model.coef, model.intercept, model.analyzer, info)


def save(model: Verifier, path: Path, key: str) -> None:
    io.write_text(path, json.dumps({**model.to_json(), "key": key}, sort_keys=True) + "\n")


def load(path: Path, key: str) -> Verifier | None:
    """The stored verifier when it was trained on the same inputs (`key`), else None."""
    if not path.is_file():
        return None
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise io.DataError(f"{path}: not valid JSON; delete it to retrain the verifier") from None
    if not isinstance(obj, dict) or obj.get("key") != key:
        return None
    return Verifier.from_json(obj, str(path))


class VerifierGrader(Grader):
    """P(real) from the classifier, trained once per loop (stored beside generation 0, keyed by its inputs)."""

    name, audit_key = "verifier", "verifier_p"

    @cached_property
    def classifier(self) -> Verifier:
        env, p = self.env, self.env.p
        model0 = env.lay.model(0) / "model.safetensors"
        if not model0.is_file():
            raise io.DataError(
                f"{model0}: missing; the verifier trains on generation-0 samples: "
                "run the train stage for generation 0 first"
            )
        key = content_key(
            io.md5_file(env.lay.real_train),
            io.md5_file(model0),
            p.loop.seed,
            self.cfg.verifier_train_size,
            p.generate.max_new_tokens,
            p.generate.batch_size,
            p.compute.threads,
            FORMAT,
        )
        found = load(env.lay.verifier, key)  # trained once per loop: reused while its inputs match
        if found is not None:
            return found
        fitted = fit(*self._training_texts(), derive_seed(p.loop.seed, "verifier"))
        save(fitted, env.lay.verifier, key)
        return fitted

    def _training_texts(self) -> tuple[list[str], list[str]]:
        from ..models.sampler import sample

        env, p, n = self.env, self.env.p, self.cfg.verifier_train_size
        docs = [r["text"] for r in io.read_rows(env.lay.real_train)]
        rng = Random(derive_seed(p.loop.seed, "verifier-real"))
        real = env.cut([docs[i] for i in sorted(rng.sample(range(len(docs)), min(n, len(docs))))])
        cfg = p.generate.model_copy(update={"num_samples": n, "temperature": 1.0, "top_k": 0, "top_p": 1.0})
        eos = lm.eos_id(env.tok)
        ids = sample(
            env.model(0),
            [[eos]] * n,
            cfg,
            env.tok.stops,
            derive_seed(p.loop.seed, "verifier-samples"),
            env.device,
            desc="verifier: gen-0 samples",
        )
        synthetic = [t for t in lm.decode(env.tok, ids) if t.strip()]
        return [t for t in real if t.strip()], synthetic

    def fit(self, p: list[float]) -> Rule:
        c, reason = self.cfg, f"verifier_{self.cfg.verifier_rule}"
        if c.verifier_rule == "top" and p:
            return Rule(low=rules.rank_cut(p, c.verifier_fraction, highest=True), below=reason)
        if c.verifier_rule == "resample" and p:
            return Rule(
                scale=rules.resample_scale(rules.odds(p), c.verifier_fraction),
                reason=reason,
                seed=self.env.ctx.seed("grade-verifier"),
            )
        return Rule()

    def grade(self, texts):
        p = self.score(texts)
        info = {
            f"verifier_{k}": float(v) for k, v in self.classifier.info.items() if k in ("train_accuracy", "n_features")
        }
        return graded({"verifier_p": p}, "verifier_p", self.fit(p), **info)

    def score(self, texts):
        return self.classifier.score(texts).tolist()

"""A real-vs-synthetic verifier: logistic regression (scikit-learn) on one of two feature sets.

- words (grade.verifier_features): TF-IDF word 1-2-grams, what a text says;
- model: statistics of the text's per-token loss under the frozen generation-0 model (trained
  on real data only): mean, sd, quantiles, max and length, how a text reads to a model.

Trained once per loop on real training documents (cut to sample length, or with
grade.verifier_match_length each cut to the token length of a generation-0 sample, so length
is no cue) against generation-0 samples, it scores p = P(real | text). The fitted model is
stored as plain JSON (vocabulary and idf weights, or feature means and scales; coefficients,
intercept), never pickled, so a stored verifier gives exactly the probabilities of the fitted
one (a unit test checks it).
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
MODEL_FORMAT = "synthloop-verifier-model/1"
MODEL_FEATURES = ("nll_mean", "nll_sd", "nll_p10", "nll_p50", "nll_p90", "nll_max", "log_tokens")
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


@dataclass(frozen=True)
class ModelVerifier:
    """Logistic regression on standardised MODEL_FEATURES (loss_features of the gen-0 model's NLL)."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    info: dict[str, Any] = field(default_factory=dict)

    def score_features(self, x: np.ndarray) -> np.ndarray:
        from scipy.special import expit

        if not len(x):
            return np.zeros(0)
        return expit(((x - self.mean) / self.scale) @ self.coef + self.intercept)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": MODEL_FORMAT,
            "features": list(MODEL_FEATURES),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept,
            "info": self.info,
        }

    @classmethod
    def from_json(cls, obj: Any, source: str = "verifier") -> ModelVerifier:
        try:
            if obj["format"] != MODEL_FORMAT or list(obj["features"]) != list(MODEL_FEATURES):
                raise ValueError(f"format {obj['format']!r}, expected {MODEL_FORMAT!r} with {MODEL_FEATURES}")
            arrays = [np.asarray(obj[k], dtype=np.float64) for k in ("mean", "scale", "coef")]
            if any(a.shape != (len(MODEL_FEATURES),) for a in arrays):
                raise ValueError("mean, scale and coef must each hold one number per feature")
            return cls(*arrays, float(obj["intercept"]), dict(obj.get("info", {})))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise io.DataError(
                f"{source}: not a synthloop model-feature verifier ({exc}); delete it to retrain"
            ) from None


def loss_features(nlls: list[list[float]]) -> np.ndarray:
    """MODEL_FEATURES of each text from its per-token NLL (an empty text: zeros)."""
    rows = []
    for v in nlls:
        x = np.asarray(v, dtype=np.float64)
        if not len(x):
            rows.append([0.0] * len(MODEL_FEATURES))
            continue
        p10, p50, p90 = np.quantile(x, [0.1, 0.5, 0.9])
        rows.append([x.mean(), x.std(), p10, p50, p90, x.max(), np.log(len(x))])
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(MODEL_FEATURES))


def fit_features(real: np.ndarray, synthetic: np.ndarray, seed: int) -> ModelVerifier:
    """Fit on the loss features of real (label 1) vs synthetic (label 0) texts."""
    from sklearn.linear_model import LogisticRegression

    if len(real) < 2 or len(synthetic) < 2:
        raise io.DataError(
            f"verifier: needs at least 2 real and 2 synthetic texts, got {len(real)} and "
            f"{len(synthetic)}; raise grade.verifier_train_size"
        )
    x, labels = np.vstack([real, synthetic]), np.array([1] * len(real) + [0] * len(synthetic))
    mean, scale = x.mean(0), x.std(0)
    scale[scale == 0] = 1.0
    clf = LogisticRegression(C=C, max_iter=2000, random_state=seed).fit((x - mean) / scale, labels)
    model = ModelVerifier(mean, scale, clf.coef_[0].astype(np.float64), float(clf.intercept_[0]))
    p = model.score_features(x)
    info = {
        "n_real": len(real),
        "n_synthetic": len(synthetic),
        "n_features": len(MODEL_FEATURES),
        "train_accuracy": float(np.mean((p >= 0.5) == labels)),
        "C": C,
    }
    return ModelVerifier(model.mean, model.scale, model.coef, model.intercept, info)


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


def save(model: Verifier | ModelVerifier, path: Path, key: str) -> None:
    io.write_text(path, json.dumps({**model.to_json(), "key": key}, sort_keys=True) + "\n")


def load(path: Path, key: str) -> Verifier | ModelVerifier | None:
    """The stored verifier when it was trained on the same inputs (`key`), else None."""
    if not path.is_file():
        return None
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise io.DataError(f"{path}: not valid JSON; delete it to retrain the verifier") from None
    if not isinstance(obj, dict) or obj.get("key") != key:
        return None
    return (ModelVerifier if obj.get("format") == MODEL_FORMAT else Verifier).from_json(obj, str(path))


class VerifierGrader(Grader):
    """P(real) from the classifier, trained once per loop (stored beside generation 0, keyed by its inputs)."""

    name, audit_key = "verifier", "verifier_p"

    @cached_property
    def classifier(self) -> Verifier | ModelVerifier:
        env, p, c = self.env, self.env.p, self.cfg
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
            c.verifier_train_size,
            p.generate.max_new_tokens,
            p.generate.batch_size,
            p.compute.threads,
            FORMAT if c.verifier_features == "words" else MODEL_FORMAT,
            *(["match_length"] if c.verifier_match_length else []),
        )
        path = env.lay.verifier if c.verifier_features == "words" else env.lay.verifier_model
        found = load(path, key)  # trained once per loop: reused while its inputs match
        if found is not None:
            return found
        real, synthetic = self._training_texts()
        seed = derive_seed(p.loop.seed, "verifier")
        if c.verifier_features == "words":
            fitted = fit(real, synthetic, seed)
        else:
            fitted = fit_features(self._loss_features(real), self._loss_features(synthetic), seed)
        save(fitted, path, key)
        return fitted

    def p_real(self, texts: list[str]) -> np.ndarray:
        """P(real) of each text as it is (the caller cuts real documents to sample length)."""
        if isinstance(self.classifier, ModelVerifier):
            return self.classifier.score_features(self._loss_features(texts))
        return self.classifier.score(texts)

    def _loss_features(self, texts: list[str]) -> np.ndarray:
        env = self.env
        ids = lm.encode(env.tok, texts)
        return loss_features(lm.token_nll(env.model(0), ids, lm.eos_id(env.tok), env.p.generate.batch_size, env.device))

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
        if self.cfg.verifier_match_length:  # each real text cut to its paired sample's token length
            real = [env.cut_to(t, len(s)) for t, s in zip(real, ids)]
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
        return self.p_real(texts).tolist()

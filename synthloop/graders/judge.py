"""An LLM judge grader: the rubric's 1-10 score of each sample, resumable shard by shard.

The prompt and parser live in judge_prompt.py; the backends are a local transformers
model (judge_local.py) or an OpenAI-compatible server through the one HTTP client
(synthloop/backends/http.py). grade.judge_* are validated in config.py only.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict
from functools import cached_property
from pathlib import Path
from typing import Protocol

from .. import io
from ..backends.http import OpenAIClient, Reply, api_key
from ..config import GradeParams
from ..shards import score_in_shards
from . import rules
from .base import Grader, graded
from .judge_prompt import REPLY_CHARS, RUBRIC_VERSION, Verdict, build_messages, build_prompt, verdict
from .rules import Rule

JUDGE_SHARD = 32  # samples per resumable shard of judge verdicts
GEN0 = "gen0"  # grade.judge_model_dir: this loop's generation-0 model
MAX_TOKENS = 128  # reply length asked of an HTTP judge
CUE, TOP_LOGPROBS = "SCORE: ", 20  # logits mode over HTTP: the digit is the next token, among the top 20
DIGITS = {str(d) for d in range(1, 10)}


class Judge(Protocol):
    def judge(self, texts: list[str]) -> list[Verdict]: ...


class HttpJudge:
    """The rubric sent to an OpenAI-compatible endpoint, one request per sample.

    mode generate: the judge writes a reply ending in SCORE: n, parsed. mode logits (completions
    route): the prompt ends in the cue "SCORE: ", one token is asked for with its top logprobs,
    and the score is the expected digit 1-9 under them (renormalised over the digits present):
    what the local judge's logits mode computes, from what a server returns."""

    def __init__(self, client: OpenAIClient, mode: str = "generate"):
        self.client, self.mode = client, mode

    def __repr__(self) -> str:
        return f"HttpJudge({self.client!r}, mode={self.mode!r})"

    def _body(self, text: str) -> dict:
        if self.mode == "logits":
            return {"prompt": build_prompt(text) + CUE, "max_tokens": 1, "temperature": 0, "logprobs": TOP_LOGPROBS}
        body = {"temperature": 0, "max_tokens": MAX_TOKENS}
        if self.client.route == "chat":
            return {**body, "messages": build_messages(text)}
        return {**body, "prompt": build_prompt(text)}

    def _verdict(self, text: str, reply: Reply) -> Verdict:
        if reply.status == "error":
            return Verdict(None, "error", reply.detail)
        if reply.status == "malformed":
            return Verdict(None, "unparsed", reply.detail[:REPLY_CHARS])
        if self.mode == "logits":
            return expected_digit(reply.top_logprobs)
        answer = reply.text
        if self.client.route == "completions" and answer.startswith(build_prompt(text)):
            answer = answer[len(build_prompt(text)) :]  # a server that echoes the prompt: keep the reply only
        return verdict(answer)

    def judge(self, texts: list[str]) -> list[Verdict]:
        replies = self.client.complete([self._body(t) for t in texts])
        return [self._verdict(t, r) for t, r in zip(texts, replies)]


def expected_digit(top: dict[str, float] | None) -> Verdict:
    """The expected digit 1-9 under a next-token distribution's top logprobs (" 7" counts as "7")."""
    if not top:
        return Verdict(None, "unparsed", "no logprobs in the reply; the server must return them (llama.cpp, vLLM)")
    probs: dict[int, float] = {}
    for token, logprob in top.items():
        if token.strip() in DIGITS:
            probs[int(token.strip())] = probs.get(int(token.strip()), 0.0) + math.exp(logprob)
    if not probs:
        return Verdict(None, "unparsed", f"no digit among the top {len(top)} next tokens")
    total = sum(probs.values())
    score = sum(d * p for d, p in probs.items()) / total
    shown = " ".join(f"{d}:{p / total:.3f}" for d, p in sorted(probs.items()))
    return Verdict(round(score, 4), "ok", f"expected {score:.4f} over p({shown})"[:REPLY_CHARS])


def make_judge(cfg: GradeParams, model_dir: str | None, device: str) -> Judge:
    """The judge of validated grade.judge_* params."""
    if cfg.judge_backend == "local":
        from pathlib import Path

        from .judge_local import LocalJudge

        return LocalJudge(Path(model_dir), cfg.judge_mode, device)
    key = api_key(cfg.judge_api_key_env, "grade.judge_api_key_env")
    return HttpJudge(
        OpenAIClient(
            cfg.judge_base_url,
            cfg.judge_model,
            cfg.judge_route,
            key,
            cfg.judge_timeout_s,
            cfg.judge_concurrency,
            cfg.judge_retries,
            max_failures=cfg.judge_max_failures,
            what="judge endpoint",
            url_key="grade.judge_base_url",
        ),
        cfg.judge_mode,
    )


class JudgeGrader(Grader):
    """An LLM judge's 1-10 score; kept by grade.judge_rule (threshold, or the best fraction)."""

    name, audit_key = "judge", "judge_score"

    @cached_property
    def _judge(self) -> tuple[Judge, str, str | None]:
        """The judge, and what decides a verdict besides the text (cached shards are reused only
        when it matches; for a local model its weights too: a retrained gen-0 model is another judge)."""
        c, root = self.cfg, self.env.lay.root
        folder = self.env.lay.model(0) if c.judge_model_dir == GEN0 else root / (c.judge_model_dir or "")
        model_dir = str(folder.resolve()) if c.judge_model_dir else None
        digest = io.weights_md5(folder) if c.judge_model_dir else None
        settings = "|".join(
            map(
                str,
                (
                    RUBRIC_VERSION,
                    c.judge_backend,
                    c.judge_mode,
                    model_dir,
                    digest,
                    c.judge_base_url,
                    c.judge_model,
                    c.judge_route,
                ),
            )
        )
        return make_judge(c, model_dir, self.env.p.compute.device), settings, model_dir

    def verdicts(self, texts: list[str], part: str) -> list[dict]:
        from .. import cluster

        judge, settings, model_dir = self._judge
        spread = None
        if cluster.pool() is not None:  # on a cluster: the missing shards are judged on its workers
            job = (self.cfg.model_dump_json(), model_dir, self.env.p.compute.device)
            spread = lambda calls: cluster.spread(judge_shard, [(*job, *call) for call in calls])  # noqa: E731
        return score_in_shards(
            texts,
            lambda chunk: [asdict(v) for v in judge.judge(chunk)],
            self.env.lay.judge_shards(self.env.k) / part,
            JUDGE_SHARD,
            f"gen {self.env.k}: judge {part}",
            settings,
            final=lambda row: row["status"] != "error",  # a failed request is asked again, never cached
            elsewhere=spread,
        )

    def fit(self, scores: list[float | None]) -> Rule:
        c = self.cfg
        cut = rules.rank_cut(scores, c.judge_fraction, highest=True) if c.judge_rule == "top" else c.judge_min_score
        return Rule(low=cut, below="judge_low", unscored=None if c.judge_unparsed == "keep" else "judge_unparsed")

    def grade(self, texts):
        verdicts = self.verdicts(texts, "samples")
        scores = [v["score"] for v in verdicts]
        counts = {f"judge_{s}": float(sum(v["status"] == s for v in verdicts)) for s in ("ok", "unparsed", "error")}
        return graded({"judge_score": scores}, "judge_score", self.fit(scores), **counts)

    def score(self, texts):
        return [v["score"] for v in self.verdicts(texts, "audit")]


@functools.lru_cache(maxsize=1)  # a worker keeps the judge it built: one load per stage, not per shard
def _judge_on_worker(cfg_json: str, model_dir: str | None, device: str) -> Judge:
    return make_judge(GradeParams.model_validate_json(cfg_json), model_dir, device)


def judge_shard(cfg_json: str, model_dir: str | None, device: str, texts: list[str], path: str) -> int:
    """On a cluster worker: one shard of verdicts, written to `path` when none failed (a failed
    request is asked again by the stage, never cached)."""
    rows = [asdict(v) for v in _judge_on_worker(cfg_json, model_dir, device).judge(texts)]
    if all(row["status"] != "error" for row in rows):
        io.write_rows(Path(path), rows)
    return len(rows)

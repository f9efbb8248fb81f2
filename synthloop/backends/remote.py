"""Generation through an OpenAI-compatible server (generate.backend: http), resumable by shard.

Each sample is one request carrying its own seed, so a seeded server (llama.cpp's) gives the
same text for a sample whatever the order, concurrency or restarts; requests go out in shards
of generate.batch_size and every finished shard is kept on disk. A request that failed or came
back malformed is never cached: the stage stops with one line once the other shards are done,
and a rerun asks only for what is missing. The circuit breakers of `OpenAIClient` (a down
endpoint, max_failures in a row) stop it at once, with the finished shards kept.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

from ..config import GenerateParams
from ..io import DataError
from ..keys import content_key, derive_seed
from ..shards import run_in_shards
from .http import OpenAIClient, api_key, check_endpoint

WHAT, URL_KEY = "generate endpoint", "generate.base_url"


def client_of(cfg: GenerateParams) -> OpenAIClient:
    return OpenAIClient(
        cfg.base_url,
        cfg.model,
        cfg.route,
        api_key(cfg.api_key_env, "generate.api_key_env"),
        cfg.timeout_s,
        cfg.concurrency,
        cfg.retries,
        max_failures=cfg.max_failures,
        what=WHAT,
        url_key=URL_KEY,
    )


def check(cfg: GenerateParams, client: OpenAIClient) -> None:
    """The server answers and serves generate.model (when it lists its models): one line if not."""
    check_endpoint(cfg.base_url, cfg.model, min(cfg.timeout_s, 10.0), client.key, URL_KEY, "generate.model")


def bodies(cfg: GenerateParams, prompts: list[str], seed: int) -> list[dict]:
    """One request body per prompt: the route's prompt field, the sampling knobs, its own seed."""
    out = []
    for i, prompt in enumerate(prompts):
        body: dict = {
            "max_tokens": cfg.max_new_tokens,
            "temperature": cfg.temperature,
            "top_p": cfg.top_p,
            "seed": derive_seed(seed, "request", i, bits=31),
        }
        if cfg.top_k:
            body["top_k"] = cfg.top_k  # an extension (llama.cpp, vLLM); OpenAI itself has no top_k
        if cfg.route == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        out.append(body)
    return out


def _row(reply) -> dict:
    return {
        "text": reply.text,
        "status": reply.status,
        "detail": reply.detail,
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "finish_reason": reply.finish_reason,
    }


def generate(
    client: OpenAIClient,
    requests: list[dict],
    cfg: GenerateParams,
    folder: Path,
    desc: str,
    after_shard: Callable[[int], None] | None = None,
) -> list[dict]:
    """One row per request that ran ({text, prompt_tokens, completion_tokens}); fewer when the
    budget stopped the run. Raises DataError (one line) when any request failed: shards kept."""
    size = cfg.batch_size
    chunks = [requests[s : s + size] for s in range(0, len(requests), size)]
    key = content_key(requests, client.base_url, client.model, client.route)
    budget = cfg.max_tokens_total

    def spent(done: list[list[dict]]) -> bool:
        return sum(r["completion_tokens"] or 0 for shard in done for r in shard) >= budget

    shards = run_in_shards(
        folder,
        key,
        [len(c) for c in chunks],
        lambda i: [_row(r) for r in client.complete(chunks[i])],
        desc,
        unit="request",
        after_shard=after_shard,
        final=lambda row: row["status"] == "ok",
        stop=spent if budget else None,
    )
    rows = [row for shard in shards for row in shard]
    failed = [r for r in rows if r["status"] != "ok"]
    if failed:
        why = ", ".join(
            f"{d or s}: {n}" for (s, d), n in Counter((r["status"], r["detail"][:80]) for r in failed).most_common(2)
        )
        raise DataError(
            f"{WHAT} {client.base_url}: {len(failed)} of {len(rows)} requests failed ({why}); "
            f"the other shards are kept in {folder}: rerun to ask only for the rest"
        )
    return rows

"""The one client for OpenAI-compatible servers (`/v1/chat/completions`, `/v1/completions`):
generation (synthloop/backends/remote.py) and the LLM judge both go through `OpenAIClient`.

Requests go out `concurrency` at a time (threads over one pooled httpx client). Retries are
tenacity's: 429, 408 and 5xx, timeouts and connection errors are tried up to 1 + `retries`
times, waiting the server's Retry-After when it sends one, else exponential backoff with
jitter; other 4xx fail at once. A 200 whose body is not an OpenAI reply is the server's
answer: not retried, it comes back `malformed`. A failure is returned as a `Reply` with
status `error`, never raised and never a result (callers keep such rows out of their caches).

Two circuit breakers raise DataError (one line) and stop the rest of the requests: no request
ever connects (a down endpoint costs one round of retries, not one per request), or
`max_failures` requests in a row fail (a server that died halfway, a model it does not serve).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_when_event_set,
    wait_exponential_jitter,
)

from ..io import DataError

log = logging.getLogger("synthloop")

MAX_RETRY_WAIT_S = 60.0  # cap on one backoff / Retry-After wait
DETAIL_CHARS = 500


@dataclass(frozen=True)
class Reply:
    text: str | None  # the completion (status ok)
    status: str  # "ok" | "malformed" (a 200 that is no OpenAI reply) | "error" (the request failed)
    detail: str = ""  # why it failed, or the malformed body (truncated, key redacted)
    prompt_tokens: int | None = None  # the server's usage fields, when it sends them
    completion_tokens: int | None = None
    top_logprobs: dict[str, float] | None = None  # the first token's, when the request asked for logprobs
    finish_reason: str | None = None  # "length": the completion hit max_tokens; "stop": it ended


def api_key(env_var: str | None, key: str) -> str | None:
    """The API key from the environment variable named by params key `key` (None: no key)."""
    if not env_var:
        return None
    value = os.environ.get(env_var, "").strip()
    if not value:
        raise DataError(
            f"{key} = {env_var}, but that environment variable is not set; export it, or set "
            f"{key}: null for a server without a key"
        )
    return value


def _root(base_url: str) -> str:
    root = base_url.rstrip("/")
    return root[:-3] if root.endswith("/v1") else root


def _models(base_url: str, timeout_s: float, api_key: str | None = None):
    """(why the server does not answer or None, its /v1/models response): one GET."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        return None, httpx.get(f"{_root(base_url)}/v1/models", timeout=timeout_s, headers=headers)
    except httpx.ConnectError:
        return "connection refused", None
    except httpx.TimeoutException:
        return f"no answer in {timeout_s:g} s", None
    except httpx.HTTPError as exc:
        return type(exc).__name__, None


def reachable(base_url: str, timeout_s: float) -> str | None:
    """None when the server answers at all (any HTTP status); else why not, in a few words."""
    return _models(base_url, timeout_s)[0]


def _listed(resp) -> list[str] | None:
    """The model ids a /v1/models response lists; None when it lists none."""
    try:
        ids = [m["id"] for m in resp.json()["data"]] if resp.status_code == 200 else None
    except (ValueError, KeyError, TypeError):
        return None
    return ids if ids and all(isinstance(i, str) for i in ids) else None


def check_endpoint(base_url: str, model: str, timeout_s: float, api_key: str | None, url_key: str, model_key: str):
    """Preflight: the server answers, and serves `model` when it lists its models; one line if not."""
    why, resp = _models(base_url, timeout_s, api_key)
    if why:
        raise DataError(
            f"{url_key} = {base_url} does not answer ({why}); start the server (`synthloop serve`) or fix {url_key}"
        )
    ids = _listed(resp)
    if ids is not None and model not in ids:
        raise DataError(f"{model_key} = {model} is not served by {base_url} (it serves: {', '.join(ids)}); fix it")


class _Failure(Exception):
    """One attempt failed; `connect` says the server was never reached; `wait` is its Retry-After."""

    def __init__(self, why: str, retry: bool, connect: bool = False, wait: float | None = None):
        super().__init__(why)
        self.why, self.retry, self.connect, self.wait = why, retry, connect, wait


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is ignored: backoff applies)."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None


class _Wait:
    """tenacity wait: the failure's Retry-After when it had one, else exponential backoff with jitter."""

    def __init__(self, backoff_s: float):
        self.backoff = wait_exponential_jitter(initial=backoff_s, max=MAX_RETRY_WAIT_S, jitter=backoff_s / 4)

    def __call__(self, retry_state) -> float:
        exc = retry_state.outcome.exception()
        if getattr(exc, "wait", None) is not None:
            return min(exc.wait, MAX_RETRY_WAIT_S)
        return self.backoff(retry_state)


def _top_logprobs(choice: dict) -> dict[str, float] | None:
    """The completions route's first-token top logprobs ({token: logprob}), when present."""
    try:
        top = choice["logprobs"]["top_logprobs"][0]
    except (KeyError, IndexError, TypeError):
        return None
    ok = isinstance(top, dict) and all(isinstance(v, int | float) for v in top.values())
    return {str(k): float(v) for k, v in top.items()} if ok else None


def _parse(body: bytes, route: str) -> Reply | None:
    """The Reply of an OpenAI-style 200 body, or None when it is malformed."""
    try:
        data = json.loads(body)
        choice = data["choices"][0]
        text = choice["message"]["content"] if route == "chat" else choice["text"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    if not isinstance(text, str):
        return None
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    counts = [usage.get(k) if isinstance(usage.get(k), int) else None for k in ("prompt_tokens", "completion_tokens")]
    finish = choice.get("finish_reason") if isinstance(choice.get("finish_reason"), str) else None
    return Reply(text, "ok", "", *counts, _top_logprobs(choice) if route == "completions" else None, finish)


class _Streak:
    """Failed requests in a row, across `complete` calls (a stage sends one call per shard)."""

    def __init__(self):
        self.n, self.lock = 0, threading.Lock()


class _Run:
    """Shared state of one `complete` call: the circuit breakers."""

    def __init__(self, probe: int, max_failures: int, streak: _Streak):
        self.connected, self.probe, self.refused = False, probe, 0
        self.max_failures, self.streak, self.tripped = max_failures, streak, ""
        self.abort = threading.Event()

    def done(self, failure: _Failure | None) -> None:
        with self.streak.lock:
            if failure is None:
                self.streak.n = 0
                return
            self.streak.n += 1
            self.refused += failure.connect
            if failure.connect and not self.connected and self.refused >= self.probe:
                self.abort.set()
            elif self.streak.n >= self.max_failures and not self.tripped:
                self.tripped = f"{self.streak.n} requests in a row failed (last: {failure.why[:120]})"
                self.abort.set()


class OpenAIClient:
    def __init__(
        self,
        base_url: str,
        model: str,
        route: str,
        api_key: str | None,
        timeout_s: float,
        concurrency: int,
        retries: int,
        max_failures: int = 10,
        backoff_s: float = 0.5,
        what: str = "endpoint",
        url_key: str = "the base URL",
    ):
        root = _root(base_url)
        self.base_url, self.model, self.route, self.what, self.url_key = base_url, model, route, what, url_key
        self.url = f"{root}/v1/chat/completions" if route == "chat" else f"{root}/v1/completions"
        self.timeout_s, self.concurrency, self.retries, self.backoff_s = timeout_s, concurrency, retries, backoff_s
        self.max_failures, self._streak = max_failures, _Streak()
        self._key = api_key  # only ever placed in the Authorization header

    def __repr__(self) -> str:  # never the key
        return f"OpenAIClient({self.url!r}, model={self.model!r}, concurrency={self.concurrency})"

    @property
    def key(self) -> str | None:
        return self._key

    def redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def complete(self, bodies: list[dict]) -> list[Reply]:
        """One reply per request body (the route's fields besides `model`), in order."""
        import httpx

        if not bodies:
            return []
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        state = _Run(min(len(bodies), self.concurrency), self.max_failures, self._streak)
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        with (
            httpx.Client(timeout=self.timeout_s, limits=limits, headers=headers) as client,
            ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="http") as pool,
        ):
            replies = list(pool.map(lambda b: self._one(client, {"model": self.model, **b}, state), bodies))
        if not state.connected:
            raise DataError(
                f"{self.what} {self.base_url} is unreachable: no request connected "
                f"({self.retries} retries each); start the server or fix {self.url_key} "
                "and rerun: finished work is kept"
            )
        if state.tripped:
            raise DataError(
                f"{self.what} {self.base_url}: {self.redact(state.tripped)}; stopped, finished work is kept: "
                "fix the server and rerun"
            )
        failed = Counter(r.detail for r in replies if r.status == "error")
        if failed:
            why = ", ".join(f"{reason}: {n}" for reason, n in failed.most_common(3))
            log.warning(
                "%s %s: %d of %d requests failed (%s)", self.what, self.url, sum(failed.values()), len(bodies), why
            )
        return replies

    def _one(self, client, body: dict, state: _Run) -> Reply:
        """One request with tenacity's retries; never raises for a per-request failure."""
        retrying = Retrying(
            stop=stop_after_attempt(self.retries + 1) | stop_when_event_set(state.abort),
            wait=_Wait(self.backoff_s),
            retry=retry_if_exception(lambda exc: isinstance(exc, _Failure) and exc.retry),
            sleep=lambda seconds: state.abort.wait(seconds),  # a tripped breaker cuts the wait short
            before_sleep=lambda rs: log.debug(
                "%s %s: %s; retry %d/%d", self.what, self.url, rs.outcome.exception(), rs.attempt_number, self.retries
            ),
            reraise=True,
        )
        try:
            reply = retrying(self._attempt, client, body, state)
        except _Failure as failure:
            state.done(failure)
            return Reply(None, "error", self.redact(failure.why)[:DETAIL_CHARS])
        state.done(None)
        return reply

    def _attempt(self, client, body: dict, state: _Run) -> Reply:
        import httpx

        if state.abort.is_set():
            raise _Failure("not sent: the endpoint stopped answering", retry=False)
        try:
            resp = client.post(self.url, json=body)
        except httpx.TimeoutException as exc:
            connect = isinstance(exc, httpx.ConnectTimeout)
            state.connected |= not connect  # a read timeout: the server is there
            raise _Failure(f"timeout after {self.timeout_s}s", retry=True, connect=connect) from None
        except httpx.ConnectError:
            raise _Failure("connection refused", retry=True, connect=True) from None
        except httpx.TransportError as exc:
            state.connected = True
            raise _Failure(f"transport error ({type(exc).__name__})", retry=True) from None
        state.connected = True
        code = resp.status_code
        if code == 429 or code >= 500:
            raise _Failure(f"HTTP {code}", retry=True, wait=_retry_after(resp.headers.get("retry-after")))
        if code != 200:
            detail = " ".join(self.redact(resp.text).split())[:200]
            raise _Failure(f"HTTP {code}: {detail}" if detail else f"HTTP {code}", retry=code == 408)
        reply = _parse(resp.content, self.route)
        if reply is None:
            return Reply(None, "malformed", self.redact(resp.text)[:DETAIL_CHARS])
        return replace(reply, text=self.redact(reply.text))

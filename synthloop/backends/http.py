"""One client for OpenAI-compatible servers (`/v1/chat/completions`, `/v1/completions`).

Requests go out `concurrency` at a time. Each is tried up to 1 + `retries` times:
429 and 5xx wait for Retry-After when given, else backoff_s * 2**attempt (with a
little jitter); timeouts and connection errors back off the same way; other 4xx fail
at once. A 200 whose body is not an OpenAI reply is not retried (it is the server's
answer) and comes back `malformed`. If the first `concurrency` requests all fail to
connect and none ever did, the rest are not sent and `complete` raises DataError: a
down endpoint costs one round of retries, not one per request. A failure is returned
as a `Reply` with status `error`, never raised and never a result.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..io import DataError

log = logging.getLogger("synthloop")

MAX_RETRY_WAIT_S = 60.0  # cap on one backoff / Retry-After wait
DETAIL_CHARS = 500


@dataclass(frozen=True)
class Reply:
    text: str | None  # the completion (status ok)
    status: str  # "ok" | "malformed" (a 200 that is no OpenAI reply) | "error" (the request failed)
    detail: str = ""  # why it failed, or the malformed body (truncated, key redacted)


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


def reachable(base_url: str, timeout_s: float) -> str | None:
    """None when the server answers at all (any HTTP status); else why not, in a few words."""
    import httpx

    try:
        httpx.get(f"{_root(base_url)}/v1/models", timeout=timeout_s)
    except httpx.ConnectError:
        return "connection refused"
    except httpx.TimeoutException:
        return f"no answer in {timeout_s:g} s"
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return None


class _Failure(Exception):
    """One attempt failed; `connect` says the server was never reached."""

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


def _reply_text(body: bytes, route: str) -> str | None:
    """The completion from an OpenAI-style body, or None when the body is malformed."""
    try:
        choice = json.loads(body)["choices"][0]
        text = choice["message"]["content"] if route == "chat" else choice["text"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return text if isinstance(text, str) else None


class _Run:
    """Shared state of one `complete` call: did anything connect, should the rest give up."""

    def __init__(self, probe: int):
        self.connected, self.probe, self.refused = False, probe, 0
        self.abort, self._lock = threading.Event(), threading.Lock()

    def failed(self, connect: bool) -> None:
        with self._lock:
            self.refused += connect
            if connect and not self.connected and self.refused >= self.probe:
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
        backoff_s: float = 0.5,
        what: str = "endpoint",
        url_key: str = "the base URL",
    ):
        root = _root(base_url)
        self.base_url, self.model, self.route, self.what, self.url_key = base_url, model, route, what, url_key
        self.url = f"{root}/v1/chat/completions" if route == "chat" else f"{root}/v1/completions"
        self.timeout_s, self.concurrency, self.retries, self.backoff_s = timeout_s, concurrency, retries, backoff_s
        self._key = api_key  # only ever placed in the Authorization header

    def __repr__(self) -> str:  # never the key
        return f"OpenAIClient({self.url!r}, model={self.model!r}, concurrency={self.concurrency})"

    def redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def complete(self, bodies: list[dict]) -> list[Reply]:
        """One reply per request body (the route's fields besides `model`), in order."""
        import httpx

        if not bodies:
            return []
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        state = _Run(probe=min(len(bodies), self.concurrency))
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        with (
            httpx.Client(timeout=self.timeout_s, limits=limits, headers=headers) as client,
            ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="http") as pool,
        ):
            replies = list(pool.map(lambda b: self._one(client, {"model": self.model, **b}, state), bodies))
        if not state.connected:
            raise DataError(
                f"{self.what} {self.base_url} is unreachable: no request connected "
                f"({self.retries} retries each); start the server or fix {self.url_key}"
            )
        failed = Counter(r.detail for r in replies if r.status == "error")
        if failed:
            why = ", ".join(f"{reason}: {n}" for reason, n in failed.most_common(3))
            log.warning(
                "%s %s: %d of %d requests failed (%s)", self.what, self.url, sum(failed.values()), len(bodies), why
            )
        return replies

    def _one(self, client, body: dict, state: _Run) -> Reply:
        """One request, with retries; never raises for a per-request failure."""
        failure: _Failure | None = None
        for attempt in range(self.retries + 1):
            if state.abort.is_set():
                return Reply(None, "error", "not sent: endpoint unreachable")
            try:
                return self._attempt(client, body, state)
            except _Failure as exc:
                failure = exc
                if not exc.connect:  # a read timeout or a cut reply: the server is there (only ever set True)
                    state.connected = True
            if not failure.retry or attempt == self.retries:
                break
            wait = failure.wait
            if wait is None:
                wait = self.backoff_s * 2**attempt * random.uniform(1, 1.25)  # jitter: no lockstep retries
            log.debug(
                "%s %s: %s; retry %d/%d in %.2fs", self.what, self.url, failure.why, attempt + 1, self.retries, wait
            )
            state.abort.wait(min(wait, MAX_RETRY_WAIT_S))
        state.failed(failure.connect)
        return Reply(None, "error", self.redact(failure.why)[:DETAIL_CHARS])

    def _attempt(self, client, body: dict, state: _Run) -> Reply:
        import httpx

        try:
            resp = client.post(self.url, json=body)
        except httpx.TimeoutException as exc:
            raise _Failure(
                f"timeout after {self.timeout_s}s", retry=True, connect=isinstance(exc, httpx.ConnectTimeout)
            ) from None
        except httpx.ConnectError:
            raise _Failure("connection refused", retry=True, connect=True) from None
        except httpx.TransportError as exc:
            raise _Failure(f"transport error ({type(exc).__name__})", retry=True) from None
        state.connected = True
        code = resp.status_code
        if code == 429 or code >= 500:
            raise _Failure(f"HTTP {code}", retry=True, wait=_retry_after(resp.headers.get("retry-after")))
        if code != 200:
            detail = " ".join(self.redact(resp.text).split())[:200]
            raise _Failure(f"HTTP {code}: {detail}" if detail else f"HTTP {code}", retry=code == 408)
        text = _reply_text(resp.content, self.route)
        if text is None:
            return Reply(None, "malformed", self.redact(resp.text)[:DETAIL_CHARS])
        return Reply(self.redact(text), "ok")

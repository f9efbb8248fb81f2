"""`synthloop serve MODEL`: llama.cpp's OpenAI-compatible server on 127.0.0.1, for the http backend
and the HTTP judge on machines without a GPU (and for the tests, which start a real one).

It runs llama-cpp-python's server (PyPI `llama-cpp-python[server]`, the `[serve]` extra) through
this module's `__main__` in its own process group, logs to .synthloop/logs/llama-server.log, waits
until /v1/models answers, and stops it (SIGTERM, then SIGKILL) when the `with` block or Ctrl-C
ends. The server answers one request at a time and honours each request's `seed`.

Same request, same text, whatever came before: the stock server reuses the previous request's
KV cache, and a seeded request that repeats the previous one's prompt came back as another tale
(measured with SmolLM2: each of 5 such repeats among 15 requests, from token 6 on; the exact
numeric cause inside llama.cpp was not pinned down). That broke a resumed run's bytes whenever two
requests with the same topic met back to back. So every request here starts from an empty
context (`_FreshLlama`): +6% per 128-token request (2.00 s against 1.88 s, idle).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
from pathlib import Path

import httpx

from ..io import DataError
from ..ui import HOST, Child, Supervisor, UiError, check_port


def threads() -> int:
    """The CPUs this process may use (llama.cpp's own default is half the cores)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class LlamaServer:
    """A llama.cpp server for one GGUF model, started on enter and stopped on exit."""

    def __init__(self, model: Path, alias: str, port: int, root: Path, n_threads: int = 0, n_ctx: int = 2048):
        self.model, self.alias, self.port, self.root = Path(model), alias, port, root
        self.n_threads, self.n_ctx = n_threads or threads(), n_ctx
        self.child: Child | None = None
        self.supervisor = Supervisor(root)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def args(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            __name__,  # llama_cpp.server, every request from an empty context
            "--model",
            str(self.model),
            "--model_alias",
            self.alias,
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--n_ctx",
            str(self.n_ctx),
            "--n_threads",
            str(self.n_threads),
            "--n_threads_batch",
            str(self.n_threads),
        ]

    def start(self, timeout_s: float = 120.0) -> LlamaServer:
        if importlib.util.find_spec("llama_cpp") is None:
            raise DataError(
                "llama.cpp's server is not installed; pip install 'synthloop[serve]' (it compiles: ~6-15 min)"
            )
        if not self.model.is_file():
            raise DataError(f"{self.model}: no such model file; run `make models` or pass a .gguf file")
        check_port(self.port, "--port")
        self.child = self.supervisor.start("llama-server", self.args())
        try:
            self.supervisor.wait_until(
                self.child,
                lambda: httpx.get(f"{self.url}/v1/models", timeout=5).status_code == 200,
                f"{self.url}/v1/models",
                timeout_s,
            )
        except UiError as exc:
            self.stop()
            raise DataError(str(exc)) from None
        return self

    def stop(self) -> str:
        """Stop the server (and anything it started); safe to call twice."""
        child, self.child = self.child, None
        return self.supervisor.stop(child) if child else ""

    def kill(self) -> None:
        """SIGKILL, as a crash would (the tests' server dying halfway)."""
        if self.child:
            os.killpg(self.child.proc.pid, signal.SIGKILL)
            self.child.proc.wait(timeout=10)
            self.supervisor.children.remove(self.child)
            self.child = None

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _serve_from_empty_context() -> None:
    """llama-cpp-python's server, with every generation starting from an empty KV cache."""
    import llama_cpp
    from llama_cpp.server.__main__ import main

    class _FreshLlama(llama_cpp.Llama):
        def generate(self, tokens, *args, **kwargs):
            self.reset()  # no prefix reuse: the prompt's numerics must not depend on the last request
            return super().generate(tokens, *args, **kwargs)

    llama_cpp.Llama = _FreshLlama  # the server's model loader builds `llama_cpp.Llama` when it starts
    main()


if __name__ == "__main__":
    _serve_from_empty_context()

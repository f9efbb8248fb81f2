"""Test helpers for the LLM judge: a tiny judge model and a real OpenAI-compatible HTTP server."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from synthloop.config import ModelParams
from synthloop.models import lm
from tests.conftest import FAIRY

SAMPLE = re.compile(r"<<<SAMPLE\n(.*)\nSAMPLE>>>", re.DOTALL)


def fairy_docs(n: int, offset: int = 0) -> list[str]:
    return FAIRY.joinpath("train.txt").read_text(encoding="utf-8").split("\n\n")[offset : offset + n]


def build_tiny_model(dest: Path) -> Path:
    """An untrained 2-layer GPT-2 (d=32, context 128) + a 512-token BPE of the real fairy tales,
    saved the way the train stage saves models."""
    tok = lm.train_tokenizer(fairy_docs(200), 512)
    dest.mkdir(parents=True, exist_ok=True)
    tok.save(dest / "tokenizer.json")
    cfg = ModelParams(source="scratch", arch="gpt2", n_layer=2, n_embd=32, n_head=2, context=128)
    model = lm.build_model(cfg, tok.vocab_size, lm.eos_id(tok), seed=0)
    lm.save_model(model, dest / "tokenizer.json", dest / "model")
    return dest / "model"


@dataclass
class Reply:
    """What the server answers: a status (0: hang up), a JSON object or raw bytes, headers, a delay first."""

    status: int = 200
    body: dict | bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


def completion(route: str, text: str) -> dict:
    """An OpenAI-style response body carrying `text` for the given route."""
    if route == "chat":
        return {
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
        }
    return {"object": "text_completion", "choices": [{"index": 0, "text": text}]}


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    payload: dict
    at: float

    @property
    def route(self) -> str:
        return "chat" if self.path.endswith("/chat/completions") else "completions"

    @property
    def prompt(self) -> str:
        return self.payload["messages"][-1]["content"] if self.route == "chat" else self.payload["prompt"]

    @property
    def sample(self) -> str:
        return SAMPLE.search(self.prompt).group(1)


class JudgeServer:
    """ThreadingHTTPServer on 127.0.0.1 (a free port) in a daemon thread.

    `answer(request)` decides each reply; every request is recorded in `requests`.
    """

    def __init__(self, answer: Callable[[Request], Reply], models: list[str] | None = None):
        self.answer, self.requests, self.models = answer, [], models
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 (/v1/models lists `models`; 404 when None)
                found = server.models is not None and self.path.endswith("/v1/models")
                body = json.dumps({"data": [{"id": m} for m in server.models or []]} if found else {}).encode()
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):  # noqa: N802 (http.server's name)
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                req = Request(self.path, dict(self.headers), json.loads(raw), time.monotonic())
                server.requests.append(req)
                if not self.path.endswith(("/v1/chat/completions", "/v1/completions")):
                    reply = Reply(404, {"error": "no such route"})
                else:
                    reply = server.answer(req)
                time.sleep(reply.delay_s)
                if reply.status == 0:  # hang up without an answer
                    self.close_connection = True
                    return
                body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.httpd.handle_error = lambda *a: None  # a client that timed out closed the socket: fine
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)  # quick shutdown

    def __enter__(self) -> JudgeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

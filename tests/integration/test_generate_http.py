"""Generation through an OpenAI-compatible server (generate.backend: http).

What a server does is tested against the real one: llama.cpp's, serving SmolLM2 (seeded text,
usage fields, the budget, the real judge through the same client). The hand-written server is
kept for faults a real server cannot be made to produce: garbage bodies, hangs, a model it
does not serve, a 404 on every request.
"""

from __future__ import annotations

import pytest

from synthloop.backends import remote
from synthloop.backends.http import OpenAIClient
from synthloop.config import SELF_LOCAL, GenerateParams
from synthloop.graders.judge import HttpJudge
from synthloop.io import DataError, read_rows
from tests.judge_server import JudgeServer, Reply, completion, fairy_docs

PROMPTS = [" ".join(d.split()[:8]) for d in fairy_docs(6, offset=300)]


def cfg(url: str, **kw) -> GenerateParams:
    base = dict(
        num_samples=len(PROMPTS), max_new_tokens=16, temperature=1.0, top_k=0, top_p=1.0, prompt="prefix",
        prompt_tokens=8, template=None, topics=None, batch_size=2, source="teacher", backend="http",
        base_url=url, model="smollm2", route="completions", retries=1,
    )  # fmt: skip
    return GenerateParams(**{**SELF_LOCAL, **base, **kw})


def generate(c: GenerateParams, folder, seed: int = 7) -> list[dict]:
    client = remote.client_of(c)
    client.backoff_s = 0.05  # keep the fault tests fast; the schedule is tenacity's either way
    remote.check(c, client)
    return remote.generate(client, remote.bodies(c, PROMPTS, seed), c, folder, "test")


def test_seeded_requests_give_the_same_text_whatever_the_concurrency_or_sharding(llama_server, tmp_path):
    one = generate(cfg(llama_server.url, concurrency=1, batch_size=2), tmp_path / "a")
    many = generate(cfg(llama_server.url, concurrency=3, batch_size=4), tmp_path / "b")
    assert [r["text"] for r in one] == [r["text"] for r in many]
    assert len({r["text"] for r in one}) == len(PROMPTS)  # a seed per request: six different samples
    assert all(r["prompt_tokens"] >= 8 and 1 <= r["completion_tokens"] <= 16 for r in one)  # the server's usage
    other = generate(cfg(llama_server.url), tmp_path / "c", seed=8)
    assert [r["text"] for r in other] != [r["text"] for r in one]


def test_the_same_request_back_to_back_gives_the_same_text(llama_server):
    """The stock server re-evaluates a repeated prompt's last token alone and samples another tale
    (from token 6 on, for this request): a resumed run differed from the uninterrupted one whenever
    two samples with the same topic met back to back. `synthloop serve` starts each from scratch."""
    import httpx

    def ask(topic: str, seed: int) -> dict:
        content = f"Write a short fairy tale about {topic}."
        return {"model": "smollm2", "max_tokens": 24, "temperature": 1.0, "top_p": 1.0, "seed": seed,
                "messages": [{"role": "user", "content": content}]}  # fmt: skip

    body, other = ask("a shoemaker and the elves", 777), ask("a fox", 778)
    texts = []
    for request in (other, body, body, other, body):
        reply = httpx.post(f"{llama_server.url}/v1/chat/completions", json=request, timeout=300).json()
        texts.append(reply["choices"][0]["message"]["content"])
    assert texts[1] == texts[2] == texts[4], texts


def test_the_budget_stops_after_the_batch_that_reaches_it(llama_server, tmp_path):
    c = cfg(llama_server.url, max_tokens_total=20, batch_size=2)
    rows = generate(c, tmp_path / "s")
    spent = [sum(r["completion_tokens"] for r in rows[: i + 2]) for i in range(0, len(rows), 2)]
    assert len(rows) < len(PROMPTS) and spent[-1] >= 20 and (len(spent) == 1 or spent[-2] < 20)
    assert generate(c, tmp_path / "s") == rows  # resumed from its shards: the same stop


def test_the_real_judge_scores_every_sample_through_the_same_client(llama_server):
    """SmolLM2 cannot follow the rubric in generate mode, but in logits mode it scores every sample."""
    texts = [" ".join(d.split()[:60]) for d in fairy_docs(3, offset=500)] + ["asdkj qwe zzkx 12 !! ##"]
    client = OpenAIClient(llama_server.url, "smollm2", "completions", None, 60.0, 2, 1)
    verdicts = HttpJudge(client, "logits").judge(texts)
    assert [v.status for v in verdicts] == ["ok"] * 4
    assert all(1 <= v.score <= 9 for v in verdicts) and len({v.score for v in verdicts}) == 4
    assert verdicts[-1].score < min(v.score for v in verdicts[:3])  # garbage scores below real tales


def test_a_model_the_server_does_not_list_is_one_line_before_any_request():
    with JudgeServer(lambda req: Reply(body=completion("completions", "x")), models=["other"]) as server:
        with pytest.raises(DataError) as info:
            generate(cfg(server.url), None)
    assert str(info.value) == f"generate.model = smollm2 is not served by {server.url} (it serves: other); fix it"
    assert not server.requests


def test_garbage_bodies_are_failures_never_cached_and_a_rerun_asks_only_for_them(tmp_path):
    broken = {"on": True}

    def answer(req) -> Reply:
        if broken["on"] and req.payload["prompt"] == PROMPTS[3]:
            return Reply(body=b"<html>502 Bad Gateway</html>")
        return Reply(
            body={
                **completion("completions", f"tale {req.payload['seed']}"),
                "usage": {"prompt_tokens": 9, "completion_tokens": 3},
            }
        )

    with JudgeServer(answer) as server:
        with pytest.raises(DataError) as info:
            generate(cfg(server.url), tmp_path / "s")
        assert "1 of 6 requests failed (<html>502 Bad Gateway</html>: 1)" in str(info.value)
        kept = sorted(p.name for p in (tmp_path / "s").glob("shard-*"))
        assert kept == ["shard-00000.jsonl", "shard-00002.jsonl"]  # the failed request's shard is not kept
        broken["on"], asked = False, len(server.requests)
        rows = generate(cfg(server.url), tmp_path / "s")
        assert len(server.requests) - asked == 2  # only shard 1's two requests again
    assert [r["completion_tokens"] for r in rows] == [3] * 6 and read_rows(tmp_path / "s" / "shard-00001.jsonl")


@pytest.mark.parametrize(
    "reply, why",
    [
        (Reply(body=completion("completions", "late"), delay_s=1.0), "timeout after 0.3s"),
        (Reply(404, {"error": {"message": "The model `smollm2` does not exist."}}), "HTTP 404"),
    ],
)
def test_a_server_failing_every_request_trips_the_breaker_with_one_line(reply, why, tmp_path):
    with JudgeServer(lambda req: reply) as server:
        with pytest.raises(DataError) as info:
            generate(cfg(server.url, timeout_s=0.3, max_failures=2, concurrency=1), tmp_path / "s")
    message = str(info.value)
    assert message.startswith(f"generate endpoint {server.url}: 2 requests in a row failed (last: {why}")
    assert "\n" not in message and "rerun" in message
    assert len(server.requests) <= 4  # stopped: not 6 requests x 2 attempts


def test_synthloop_serve_answers_then_stops_on_ctrl_c(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    import httpx

    from tests.conftest import GGUF, REPO, free_port

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-m", "synthloop", "serve", str(GGUF), "--alias", "smollm2", "--port", str(port)]
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(3)]
        assert lines[1].startswith(f"serving {GGUF.name} as 'smollm2' at http://127.0.0.1:{port}/v1"), lines
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5).json()["data"][0]["id"] == "smollm2"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0 and out.strip().startswith("stopped llama-server (pid"), (out, err)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5)
    missing = subprocess.run([*args[:4], "nope.gguf"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "error: nope.gguf: no such model file; run `make models` or pass a .gguf file"

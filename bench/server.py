"""Generation through llama.cpp's OpenAI-compatible server vs synthloop's in-process sampler,
on the same model (SmolLM2-135M-Instruct, `make models`) and the same chat-template prompts.

    python bench/server.py [--samples 32] [--new-tokens 128] [--concurrency 1,4] [--batch 16]

The server path is what `generate.backend: http` does (`synthloop serve` + the one HTTP
client, one seeded request per sample, T=1); tokens/s counts the completion tokens the
server reports per wall second. The in-process path is `generate.backend: local` with a
teacher: the GGUF dequantized to fp32 (load time reported apart) and sampled by
fast.LlamaDecoder in batches of --batch prompts of equal length. llama.cpp runs the 4-bit
weights (Q4_1) one request at a time; the in-process sampler runs fp32 weights in batches.
Last line: RESULT server_tok_s=<best concurrency> local_tok_s=<batch> server_vs_local=<ratio>
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from synthloop.config import SELF_LOCAL, GenerateParams  # noqa: E402

GGUF = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def instructions(n: int) -> list[str]:
    from random import Random

    from synthloop import prompts

    topics = [t.strip() for t in (ROOT / "prompts" / "topics.txt").read_text().splitlines() if t.strip()]
    template = (ROOT / "prompts" / "fairytale.txt").read_text().strip()
    return prompts.instructions(template, topics, n, Random(0))


def cfg(args, **kw) -> GenerateParams:
    base = dict(
        num_samples=args.samples, max_new_tokens=args.new_tokens, temperature=1.0, top_k=0, top_p=1.0,
        prompt="template", prompt_tokens=1, template="prompts/fairytale.txt", topics="prompts/topics.txt",
        batch_size=args.batch, source="teacher",
    )  # fmt: skip
    return GenerateParams(**{**SELF_LOCAL, **base, **kw})


def over_http(args, said: list[str]) -> dict[int, float]:
    from synthloop.backends import remote
    from synthloop.backends.serve import LlamaServer
    from tests.conftest import free_port

    out = {}
    with LlamaServer(GGUF, "smollm2", free_port(), ROOT / ".synthloop" / "bench") as server:
        for c in args.concurrency:
            g = cfg(args, backend="http", base_url=server.url, model="smollm2", route="chat", concurrency=c)
            client = remote.client_of(g)
            client.complete(remote.bodies(g, said[:2], 1))  # warm-up
            start = time.perf_counter()
            replies = client.complete(remote.bodies(g, said, 0))
            seconds = time.perf_counter() - start
            tokens = sum(r.completion_tokens for r in replies)
            out[c] = tokens / seconds
            print(f"server, concurrency {c}: {tokens} tokens in {seconds:.1f} s = {out[c]:.1f} tok/s", flush=True)
    return out


def in_process(args, said: list[str]) -> float:
    import torch

    from synthloop.models import lm, source
    from synthloop.models.sampler import sample

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model, hf_tok = source.load(source.resolve(str(GGUF), ROOT, "generate.teacher"))
    tok = source.tok_of(hf_tok, model)
    print(f"in process: GGUF dequantized and loaded in {time.perf_counter() - start:.1f} s", flush=True)
    ids = lm.chat_prompts(tok, said)
    g = cfg(args, backend="local", teacher=str(GGUF))
    sample(model, ids[:2], g, tok.stops, 1, torch.device("cpu"))  # warm-up
    start = time.perf_counter()
    new = sample(model, ids, g, tok.stops, 0, torch.device("cpu"))
    seconds = time.perf_counter() - start
    tokens = sum(len(x) for x in new)
    print(f"in process, batches of {args.batch}: {tokens} tokens in {seconds:.1f} s = {tokens / seconds:.1f} tok/s")
    return tokens / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if not GGUF.is_file():
        sys.exit(f"{GGUF}: missing; run `make models` first")
    said = instructions(args.samples)
    print(f"SmolLM2-135M-Instruct, {args.samples} chat prompts, {args.new_tokens} new tokens max, T=1", flush=True)
    server = over_http(args, said)
    local = in_process(args, said)
    best = max(server.values())
    print(f"RESULT server_tok_s={best:.1f} local_tok_s={local:.1f} server_vs_local={best / local:.2f}")


if __name__ == "__main__":
    main()

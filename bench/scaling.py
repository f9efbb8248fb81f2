"""How cost grows: sampling and training time at 1x, 2x, 4x the work, and what `accumulate` adds.

    python bench/scaling.py [--samples 256] [--steps 20]

Sampling time should double with the number of samples and training time with
the number of steps (both linear). Training runs a fixed number of steps, so
`accumulate` pays for its growing pool only where the pool is read: tokenizing
and packing the training set, measured here at 1, 2 and 4 generations' worth.
Last line: RESULT sample_linearity=<t4x / 4 t1x> train_linearity=<t4x / 4 t1x> pack_s_per_1k_docs=<s>
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import train_params  # noqa: E402
from synthloop.config import SELF_LOCAL, GenerateParams, ModelParams  # noqa: E402
from synthloop.models import lm  # noqa: E402
from synthloop.models.sampler import sample  # noqa: E402
from synthloop.models.trainer import train  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpora" / "fairytales" / "train.txt"


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count())
    docs = CORPUS.read_text(encoding="utf-8").split("\n\n")
    tok = lm.train_tokenizer(docs[:600], 4096)
    eos = lm.eos_id(tok)
    mcfg = ModelParams(source="scratch", arch="gpt2", n_layer=2, n_embd=128, n_head=4, context=256)
    model = lm.build_model(mcfg, tok.vocab_size, eos, seed=0).eval()
    stream = lm.pack(tok, docs[:600])
    gcfg = GenerateParams(
        **SELF_LOCAL,
        num_samples=1,
        max_new_tokens=128,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        prompt="bos",
        prompt_tokens=1,
        template=None,
        topics=None,
        batch_size=128,
    )
    print(f"{'x':>3} {'sample s':>9} {'train s':>8} {'pack s':>7} {'pool docs':>10}")
    rows = {}
    for x in (1, 2, 4):
        n = args.samples * x
        s = timed(lambda n=n: sample(model, [[eos]] * n, gcfg, eos, 0, torch.device("cpu")))
        tcfg = train_params(args.steps * x)
        t = timed(
            lambda tcfg=tcfg: train(lm.build_model(mcfg, tok.vocab_size, eos, 0), stream, tcfg, 0, torch.device("cpu"))
        )
        pool = docs[: 600 * x]
        p = timed(lambda pool=pool: lm.pack(tok, pool))
        rows[x] = (s, t, p, len(pool))
        print(f"{x:>3} {s:>9.2f} {t:>8.2f} {p:>7.2f} {len(pool):>10}")
    print(
        f"RESULT sample_linearity={rows[4][0] / (4 * rows[1][0]):.2f} "
        f"train_linearity={rows[4][1] / (4 * rows[1][1]):.2f} "
        f"pack_s_per_1k_docs={rows[4][2] / rows[4][3] * 1000:.3f}"
    )


if __name__ == "__main__":
    main()

"""What round 2's verifier arms drew from the mixed pool, against a blind draw (EXPERIMENTS.md).

    .venv/bin/python docs/experiments/round2/verifier_pick.py sweeps/round2 [--gens 1 3 5]

For accumulate_subsample (blind), subsample_verifier (bag of words) and subsample_verifier_model
(generation-0 loss features), every seed and the given generations: the real share of the
training set by tokens, and the synthetic rows' loss under generation 0 (nats per token) and
length (words), for the rows drawn into the training set against the whole pool they were
drawn from (1,500 of each, drawn at random with a fixed seed). A verifier that keeps the
synthetic rows generation 0 finds likeliest selects like `replace_self_lowest`, and sharpens the
same way.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path

from synthloop import io
from synthloop.config import ComputeParams
from synthloop.models import lm

ARMS = ["accumulate_subsample", "subsample_verifier", "subsample_verifier_model"]


def nats(model, tok, texts: list[str], device, n: int = 1500) -> float:
    """Mean loss per token of `texts` (a fixed random n of them) under `model`, each given a leading end-of-text."""
    texts = random.Random(0).sample(texts, min(n, len(texts)))
    scored = lm.sequence_nll(model, lm.encode(tok, texts), lm.eos_id(tok), 64, device)
    return sum(nll for nll, _ in scored) / sum(count for _, count in scored)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep", type=Path, help="the sweep's folder (runs/ and data-*/ inside)")
    ap.add_argument("--gens", type=int, nargs="+", default=[1, 3, 5])
    args = ap.parse_args()
    device = lm.setup_torch(ComputeParams(device="cpu", threads=0))
    tok = lm.load_tokenizer(next(args.sweep.glob("data-*/tokenizer.json")))
    cols = ["real share (tokens)", "synthetic loss, drawn", "in the pool", "words, drawn", "in the pool"]
    print("| arm | gen | seeds | " + " | ".join(cols) + " |")
    print("|---|---|---|---|---|---|---|---|")
    for arm in ARMS:
        runs = sorted(args.sweep.glob(f"runs/{arm}-s*"))
        models = {run: lm.load_model(run / "gens" / "0" / "model", device) for run in runs}  # each seed's scorer
        for g in args.gens:
            cells: dict[str, list[float]] = {k: [] for k in ("real", "drawn", "pool", "wdrawn", "wpool")}
            for run in runs:
                gen = run / "gens" / str(g)
                mix = json.loads((gen / "mix.json").read_text())
                cells["real"].append(mix["real_tokens"] / (mix["real_tokens"] + mix["synthetic_tokens"]))
                drawn = [r["text"] for r in io.read_rows(gen / "train_set.jsonl") if r["source"] == "synthetic"]
                pool = [r["text"] for r in io.read_rows(gen / "pool.jsonl") if r["source"] == "synthetic"]
                cells["drawn"].append(nats(models[run], tok, drawn, device))
                cells["pool"].append(nats(models[run], tok, pool, device))
                cells["wdrawn"].append(statistics.mean(len(t.split()) for t in drawn))
                cells["wpool"].append(statistics.mean(len(t.split()) for t in pool))
            m = {k: statistics.mean(v) for k, v in cells.items()}
            print(
                f"| {arm} | {g} | {len(runs)} | {m['real']:.2f} | {m['drawn']:.3f} | {m['pool']:.3f} "
                f"| {m['wdrawn']:.0f} | {m['wpool']:.0f} |"
            )


if __name__ == "__main__":
    main()

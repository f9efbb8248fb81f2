"""EXPERIMENTS.md's round-2 tables, as markdown, from a sweep's summary.csv.

    .venv/bin/python docs/experiments/round2/tables.py docs/experiments/round2/summary.csv \
        [--root DIR] [--sweep sweeps/round2.yaml] [--weak WEAK_SUMMARY] [--compute COMPUTE_SUMMARY] \
        [--fresh FRESH_SUMMARY] [--update EXPERIMENTS.md]

Blocks: the generation-5 table (95% t intervals over seeds), the orderings the sweep file's
`compare` names (paired by seed), the CE-entropy gap by generation, generation 0's seed spread;
with --weak (sweeps/round2_weak's summary) the same core arms at both generation-0 strengths; with
--compute (sweeps/round2_compute's) real-only fine-tuning for accumulate's step counts; with --fresh
(sweeps/round2_fresh's) replace retrained from new weights every generation; with --root
(the sweep's project folder) each arm's CPU time. Printed, or with --update written
between `<!-- round2:NAME -->` and `<!-- /round2:NAME -->` in that file, so the text's numbers
are regenerated, never copied by hand. `synthloop report` draws the figures from the same file.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

import yaml

from synthloop.experiments.compare import ci_text, costs, load, markdown_table, paired, paired_table, with_deltas


def ci(values, digits: int = 2) -> str:
    return ci_text(values, f"+.{digits}f")


def gen5(df, cpu) -> str:
    last = int(df["generation"].max())
    final = df[df["generation"] == last]
    cols = ["arm", "seeds", f"CE at {last}", "Δ CE (nats)", "Δ bits/byte", "Δ entropy", "CE−entropy gap"]
    cols += ["Δ distinct-2", "synthetic tokens", "words/sample"]
    cols += [f"CPU-min, gens 1-{last}"] if cpu is not None else []
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for arm, g in final.groupby("arm", sort=False):
        row = [
            arm,
            str(g["seed"].nunique()),
            f"{g['test_ce'].mean():.3f}",
            ci(g["test_ce_delta"]),
            ci(g["test_bpb_delta"], 3),
            ci(g["test_entropy_delta"]),
            f"{g['test_ce_gap'].mean():+.2f}",
            ci(g["distinct_2_delta"]),
            f"{g['synthetic_token_share'].mean():.2f}",
            f"{g['sample_words_mean'].mean():.0f}",
        ]
        if cpu is not None:
            row.append(f"{cpu[g['run']].mean() / 60:.1f}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def gaps(df) -> str:
    table = df.pivot_table(index="arm", columns="generation", values="test_ce_gap", sort=False)
    lines = ["| arm | " + " | ".join(f"gen {c}" for c in table.columns) + " |", "|" + "---|" * (len(table.columns) + 1)]
    lines += [f"| {arm} | " + " | ".join(f"{v:+.2f}" for v in row) + " |" for arm, row in table.iterrows()]
    return "\n".join(lines)


def gen0(df) -> str:
    ce = df[df["generation"] == 0].groupby("seed")["test_ce"].first()
    return (
        f"Generation 0 over {len(ce)} seeds: whole-split test CE {ce.mean():.3f} ± {ce.std():.3f} nats (sd), "
        f"range {ce.min():.3f}-{ce.max():.3f} (perplexity {math.exp(ce.mean()):.1f})."
    )


def seeds(n: int) -> str:
    return f"{n} seed" + ("s" if n != 1 else "")


def paired_by_seed(a, b) -> str:
    """a − b over the seeds both have (Series indexed by seed), with its 95% interval and seed count."""
    common = a.index.intersection(b.index)
    return f"{ci(a[common] - b[common], 3)} ({seeds(len(common))})"


def strength(strong, weak, pairs) -> str:
    """The weak generation 0's core arms beside the strong one's: generation 0, each arm's rise, each ordering."""
    last = int(weak["generation"].max())
    head = [f"at generation {last}"]
    for name, df in (("strong", strong), ("weak", weak)):
        ce = df[df["generation"] == 0].groupby("seed")["test_ce"].first().mean()
        head.append(f"{name} generation 0 ({ce:.2f} nats, ppl {math.exp(ce):.0f})")
    lines = ["| " + " | ".join(head) + " |", "|---|---|---|"]
    for arm in weak["arm"].unique():
        cells = []
        for df in (strong, weak):
            g = df[(df["generation"] == last) & (df["arm"] == arm)]
            cells.append(f"{ci(g['test_ce_delta'])} ({seeds(g['seed'].nunique())})" if len(g) else "—")
        lines.append(f"| Δ CE, {arm} | " + " | ".join(cells) + " |")
    for a, b in pairs:
        cells = []
        for df in (strong, weak):
            r = paired(df, "test_ce", a, b)
            interval = "" if r["low"] != r["low"] else f" [{r['low']:+.3f}, {r['high']:+.3f}]"
            cells.append(f"{r['diff']:+.3f}{interval} ({seeds(r['seeds'])})")
        lines.append(f"| {a} − {b}, paired | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compute(real, strong) -> str:
    """Real-only fine-tuning for accumulate's growing step counts, beside accumulate at those steps (paired by seed)."""
    acc = strong[(strong["arm"] == "accumulate") & (strong["generation"] > 0)]
    at = acc.groupby("generation")["train_steps"].mean()
    cols = ["steps", "real only: Δ CE", "seeds", "accumulate, growing compute, at about these steps"]
    lines = ["| " + " | ".join(cols + ["accumulate − real only, paired"]) + " |", "|---|---|---|---|---|"]
    for steps, g in real[real["generation"] == 1].groupby("train_steps"):
        near = (at - steps).abs()
        match, diff = "—", "—"
        if near.min() < 50:
            gen = near.idxmin()
            a = acc[acc["generation"] == gen].set_index("seed")["test_ce_delta"]
            match = f"gen {gen}: {ci(a)} ({seeds(a.size)})"
            diff = paired_by_seed(a, g.set_index("seed")["test_ce_delta"])
        lines.append(f"| {steps} | {ci(g['test_ce_delta'])} | {g['seed'].nunique()} | {match} | {diff} |")
    return "\n".join(lines)


def fresh(scratch, strong) -> str:
    """replace retrained from new weights every generation beside replace fine-tuning generation 0, by generation."""
    arm = scratch["arm"].iloc[0]
    scratch = scratch[scratch["arm"] == arm]
    cols = [
        "generation",
        "replace, fine-tuned: Δ CE",
        f"{arm}: Δ CE",
        f"{arm} − replace, paired",
        f"{arm}: CE−entropy gap",
    ]
    lines = ["| " + " | ".join(cols) + " |", "|---|---|---|---|---|"]
    tuned = strong[strong["arm"] == "replace"]
    for gen, g in scratch[scratch["generation"] > 0].groupby("generation"):
        t = tuned[tuned["generation"] == gen].set_index("seed")["test_ce_delta"]
        f = g.set_index("seed")["test_ce_delta"]
        cells = [f"{ci(t)} ({seeds(t.size)})", f"{ci(f)} ({seeds(f.size)})", paired_by_seed(f, t)]
        cells.append(f"{g['test_ce_gap'].mean():+.2f}")
        lines.append(f"| {gen} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def update(path: Path, blocks: dict[str, str]) -> None:
    text = path.read_text(encoding="utf-8")
    for name, body in blocks.items():
        pattern = re.compile(rf"(<!-- round2:{name} -->\n).*?(<!-- /round2:{name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"{path}: no <!-- round2:{name} --> ... <!-- /round2:{name} --> block to fill")
        text = pattern.sub(lambda m, body=body: m.group(1) + body + "\n" + m.group(2), text)
    path.write_text(text, encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("summary", type=Path)
    ap.add_argument("--root", type=Path, default=None, help="the sweep's project folder (for CPU time)")
    ap.add_argument("--sweep", type=Path, default=Path("sweeps/round2.yaml"), help="its `compare` pairs")
    ap.add_argument("--weak", type=Path, default=None, help="sweeps/round2_weak's summary.csv")
    ap.add_argument("--compute", type=Path, default=None, help="sweeps/round2_compute's summary.csv")
    ap.add_argument("--fresh", type=Path, default=None, help="sweeps/round2_fresh's summary.csv")
    ap.add_argument("--update", type=Path, default=None, help="fill this file's round2 blocks")
    args = ap.parse_args()
    df = with_deltas(load(args.summary), ["test_ce", "test_bpb", "test_entropy", "test_ce_gap", "distinct_2"])
    cpu = costs(df, args.root).set_index("run")["cpu_seconds"] if args.root else None
    arms = set(df["arm"])
    pairs = [tuple(p) for p in yaml.safe_load(args.sweep.read_text())["compare"] if set(p) <= arms]
    blocks = {
        "gen5": gen5(df, cpu),
        "orderings": markdown_table(paired_table(df, "test_ce", pairs)),
        "gap": gaps(df),
        "gen0": gen0(df),
    }
    if args.weak:
        weak = with_deltas(load(args.weak), ["test_ce"])
        weak_pairs = [tuple(p) for p in yaml.safe_load(Path("sweeps/round2_weak.yaml").read_text())["compare"]]
        blocks["weak"] = strength(df, weak, [p for p in weak_pairs if set(p) <= set(weak["arm"])])
    if args.compute:
        blocks["compute"] = compute(with_deltas(load(args.compute), ["test_ce"]), df)
    if args.fresh:
        blocks["fresh"] = fresh(with_deltas(load(args.fresh), ["test_ce"]), df)
    if args.update:
        update(args.update, blocks)
    else:
        print("\n\n".join(blocks.values()))


if __name__ == "__main__":
    main()

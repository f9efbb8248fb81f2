"""EXPERIMENTS.md's round-2 tables, printed as markdown from a sweep's summary.csv.

    .venv/bin/python docs/experiments/round2/tables.py docs/experiments/round2/summary.csv [--root DIR]

The generation-5 table (95% t intervals over seeds), the per-generation CE-entropy gap, generation 0's
seed spread, and where the runs' files are under --root (the sweep's project folder) their CPU time.
`synthloop report` draws the figures and the paired orderings from the same file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from synthloop.experiments.compare import costs, load, mean_ci, with_deltas


def ci(values, digits: int = 2) -> str:
    mean, low, high = mean_ci(values)
    if low != low:
        return f"{mean:+.{digits}f}"
    return f"{mean:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("summary", type=Path)
    ap.add_argument("--root", type=Path, default=None, help="the sweep's project folder (for CPU time)")
    args = ap.parse_args()
    df = with_deltas(load(args.summary), ["test_ce", "test_bpb", "test_entropy", "test_ce_gap", "distinct_2"])
    last = int(df["generation"].max())
    final = df[df["generation"] == last]
    cpu = costs(df, args.root).set_index("run")["cpu_seconds"] if args.root else None

    print(f"Generation {last}: mean over seeds, 95% t interval of the change since generation 0\n")
    cols = [
        "arm",
        "seeds",
        f"CE at {last}",
        "Δ CE (nats)",
        "Δ bits/byte",
        "Δ entropy",
        "CE−entropy gap",
        "Δ distinct-2",
        "synthetic tokens",
        "words/sample",
    ]
    cols += ["CPU-min, gens 1-5"] if cpu is not None else []
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
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
        print("| " + " | ".join(row) + " |")

    print("\nCE−entropy gap on real test by generation (mean over seeds)\n")
    gaps = df.pivot_table(index="arm", columns="generation", values="test_ce_gap", sort=False)
    print("| arm | " + " | ".join(f"gen {c}" for c in gaps.columns) + " |\n|" + "---|" * (len(gaps.columns) + 1))
    for arm, row in gaps.iterrows():
        print(f"| {arm} | " + " | ".join(f"{v:+.2f}" for v in row) + " |")

    gen0 = df[df["generation"] == 0].groupby("seed")["test_ce"].first()
    print(
        f"\nGeneration 0 over {len(gen0)} seeds: test CE {gen0.mean():.3f} ± {gen0.std():.3f} (sd), "
        f"range {gen0.min():.3f}-{gen0.max():.3f}"
    )


if __name__ == "__main__":
    main()

"""report: one summary row per generation (reports/summary.csv) and the collapse plot."""

from __future__ import annotations

import csv
import io as stdio
from pathlib import Path

from .. import io
from ..layout import Layout
from .context import StageContext

COLUMNS = ["generation", "test_ce", "test_ppl", "distinct_1", "distinct_2", "unigram_kl",
           "n_train", "synthetic_share", "n_generated", "n_kept", "kept_share",
           "sample_words_mean", "empty_share"]
PLOTTED = ["test_ppl", "distinct_1", "distinct_2", "unigram_kl", "synthetic_share", "kept_share"]


def summary_rows(lay: Layout, generations: int) -> list[dict[str, float]]:
    rows = []
    for k in range(generations + 1):
        row: dict[str, float] = {"generation": k, "n_generated": 0, "n_kept": 0, "kept_share": 1.0}
        row.update(io.read_json(lay.metrics(k)))
        row.update(io.read_json(lay.mix_stats(k)))
        if k > 0:
            row.update(io.read_json(lay.grade_stats(k)))
            row["n_generated"] = row["n_graded"]
        rows.append({c: row[c] for c in COLUMNS})
    return rows


def to_csv(rows: list[dict[str, float]]) -> str:
    buf = stdio.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: f"{v:.6g}" if isinstance(v, float) else v for c, v in row.items()})
    return buf.getvalue()


def plot(rows: list[dict[str, float]], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gens = [r["generation"] for r in rows]
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5), constrained_layout=True)
    for ax, key in zip(axes.flat, PLOTTED):
        ax.plot(gens, [r[key] for r in rows], marker="o")
        ax.set_title(key)
        ax.set_xlabel("generation")
        ax.set_xticks(gens)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    with io.atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)


def run(ctx: StageContext) -> dict[str, float]:
    p, lay = ctx.params, ctx.layout
    rows = summary_rows(lay, p.loop.generations)
    io.write_text(lay.summary, to_csv(rows))
    plot(rows, lay.plot, f"synthloop: {p.mix.strategy}, {p.loop.generations} generations, seed {p.loop.seed}")
    first, last = rows[0], rows[-1]
    return {"final_test_ppl": last["test_ppl"], "delta_test_ce": last["test_ce"] - first["test_ce"],
            "delta_distinct_2": last["distinct_2"] - first["distinct_2"]}

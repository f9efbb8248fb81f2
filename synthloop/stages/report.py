"""report: one summary row per generation (reports/summary.csv) and the plots."""

from __future__ import annotations

from pathlib import Path

from .. import io
from ..layout import Layout
from ..metrics.samples import POOLED
from ..plots import pyplot, save_png
from . import table
from .context import StageContext

# graders with an audit (grade.json `audit_<grader>_*`); the columns of a grader that is off stay empty
AUDITED = ("filters", "self", "reference", "verifier", "judge")
GRADER_COLUMNS = [
    "dedup_dropped",
    "decontaminate_dropped",
    *[f"audit_{g}_{m}" for g in AUDITED for m in ("auc", "real_keep")],
]
# numbers some runs do not have (an older run's files, a stage that does not write them): left empty
OPTIONAL = [
    "truncated_share",
    "train_steps",
    "train_tokens",
    "train_epochs",
    "train_loss",
    "real_words",
    "synthetic_words",
    "real_tokens",
    "synthetic_tokens",
    "synthetic_token_share",
]
COLUMNS = [
    "generation",
    "test_ce",
    "test_ppl",
    "test_bpb",
    "test_bpc",
    "test_entropy",
    "test_ce_gap",
    "distinct_1",
    "distinct_2",
    "distinct_3",
    "ttr",
    "self_bleu",
    "unigram_kl",
    "unigram_js",
    "rare_coverage",
    "rare_coverage_real",
    "zipf_slope",
    "ref_ppl_mean",
    "ref_ppl_p10",
    "ref_ppl_p50",
    "ref_ppl_p90",
    "top_name_share",
    "name_tv",
    "pronoun_tv",
    "she_share",
    "n_train",
    "synthetic_share",
    "synthetic_word_share",
    "n_generated",
    "completion_tokens",
    "prompt_tokens",
    "cost",
    "budget_hit",
    "n_kept",
    "kept_share",
    "sample_words_mean",
    "empty_share",
    "metric_words",
    *[f"{m}_real" for m in POOLED],  # real text at the samples' word budget
    *GRADER_COLUMNS,
    *OPTIONAL,
]
SPENT0 = {"completion_tokens": 0, "prompt_tokens": 0, "cost": 0.0, "budget_hit": 0}  # generation 0 generates nothing
PLOTTED = [
    "test_ppl",
    "distinct_2",
    "self_bleu",
    "unigram_kl",
    "rare_coverage",
    "ref_ppl_p50",
    "top_name_share",
    "synthetic_share",
]


def summary_rows(lay: Layout, generations: int) -> list[dict[str, float]]:
    rows = []
    for k in range(generations + 1):
        row: dict[str, float] = {"generation": k, "n_generated": 0, "n_kept": 0, "kept_share": 1.0, **SPENT0}
        for stage in table.GENERATION:  # every per-generation stage's numbers (stats files hold disjoint keys)
            path = table.stats_file(lay, stage, k) if stage.stats and k >= stage.first else None
            if path is not None and path.is_file():  # an older run may lack one (train.json came in round 2)
                row.update(io.read_json(path))
        row["n_generated"] = row.get("n_graded", 0)
        missing = [c for c in COLUMNS if c not in row and c not in GRADER_COLUMNS and c not in OPTIONAL]
        if missing:
            raise io.DataError(
                f"{lay.gen(k)}: no {missing[0]} for generation {k} (+{len(missing) - 1} more); "
                "run its stages first (synthloop run resumes)"
            )
        rows.append({c: row.get(c, "") for c in COLUMNS})
    return rows


def read_summary(path: Path) -> list[dict[str, str]]:
    return io.read_csv(path)


def write_summary(path: Path, rows: list[dict[str, float]]) -> None:
    io.write_csv(
        path, [{c: f"{v:.6g}" if isinstance(v, float) else v for c, v in row.items()} for row in rows], COLUMNS
    )


def plot(rows: list[dict[str, float]], out: Path, title: str) -> None:
    plt = pyplot()
    gens = [r["generation"] for r in rows]
    fig, axes = plt.subplots(2, 4, figsize=(15, 6.5), constrained_layout=True)
    for ax, key in zip(axes.flat, PLOTTED):
        ax.plot(gens, [r[key] for r in rows], marker="o")
        if key == "rare_coverage":
            ax.plot(gens, [r["rare_coverage_real"] for r in rows], ls="--", color="grey", label="real text, same size")
            ax.legend(fontsize=8)
        ax.set_title(key)
        ax.set_xlabel("generation")
        ax.set_xticks(gens)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    save_png(fig, out)
    plt.close(fig)


def plot_ref_hist(lay: Layout, generations: int, out: Path) -> None:
    """Shumailov's figure: the samples' perplexity under the frozen gen-0 model, by generation."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), constrained_layout=True)
    cmap = plt.get_cmap("viridis")
    for k in range(generations + 1):
        hist = io.read_json(lay.ref_hist(k))
        edges, counts = hist["edges"], hist["counts"]
        total = max(1, sum(counts))
        ax.stairs([c / total for c in counts], edges, color=cmap(k / max(1, generations)), label=f"gen {k}")
    ax.set_xscale("log")
    ax.set_xlabel("perplexity of a sample under the generation-0 model")
    ax.set_ylabel("share of samples")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    save_png(fig, out)
    plt.close(fig)


def run(ctx: StageContext) -> dict[str, float]:
    p, lay = ctx.params, ctx.layout
    rows = summary_rows(lay, p.loop.generations)
    write_summary(lay.summary, rows)
    plot(rows, lay.plot, f"synthloop: {p.mix.strategy}, {p.loop.generations} generations, seed {p.loop.seed}")
    plot_ref_hist(lay, p.loop.generations, lay.ref_hist_plot)
    first, last = rows[0], rows[-1]
    return {
        "final_test_ppl": last["test_ppl"],
        "delta_test_ce": last["test_ce"] - first["test_ce"],
        "delta_distinct_2": last["distinct_2"] - first["distinct_2"],
    }

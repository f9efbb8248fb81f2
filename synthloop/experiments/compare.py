"""`synthloop report`: a sweep's summary.csv -> report.md and plots (arms side by side).

Each metric is drawn against generation, one line per arm (the mean over seeds)
with a band of +-1 standard deviation; a second figure shows the change since
generation 0; a third, Shumailov's figure, the samples' perplexity under the
frozen generation-0 model at the first and last generation of each arm.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import io, plots
from ..io import DataError

# (column, what it is, which way is good)
METRICS = [
    ("test_ce", "real test cross-entropy (nats)", "lower"),
    ("test_bpb", "real test bits per byte (any tokenizer)", "lower"),
    ("test_entropy", "next-token entropy on real test", "closer to gen 0"),
    ("test_ce_gap", "cross-entropy minus entropy on real test (shift)", "lower"),
    ("distinct_2", "distinct bigrams of samples", "higher"),
    ("self_bleu", "self-BLEU-4 of samples", "lower"),
    ("unigram_js", "unigram JS to real test", "lower"),
    ("rare_coverage", "rare real word types in samples", "higher"),
    ("ref_ppl_p50", "median sample ppl under gen-0 model", "closer to gen 0"),
    ("ref_ppl_p90", "p90 sample ppl under gen-0 model", "closer to gen 0"),
    ("zipf_slope", "Zipf slope of samples", "closer to gen 0"),
    ("top_name_share", "share of the top character name", "closer to gen 0"),
    ("name_tv", "name distribution TV to real", "lower"),
    ("pronoun_tv", "he/she/they TV to real", "lower"),
]
# the one-glance figure: (column, title); real-data fit first, then diversity and tails
HEADLINE = [
    ("test_ce_delta", "Δ real test cross-entropy (nats)"),
    ("distinct_2", "distinct-2 of samples"),
    ("rare_coverage", "rare real word types in samples"),
    ("test_ce_gap", "CE minus entropy on real test (nats; symlog)"),
]
# panels drawn on a symmetric log scale (linear within ±0.1) instead of sending arms off it: the
# gap's sign and size both matter, from -0.1 (a broadened model) to +4 (a sharpened one)
SYMLOG = {"test_ce_gap"}
TABLE = [
    "test_ce",
    "test_bpb",
    "test_ce_gap",
    "distinct_2",
    "self_bleu",
    "unigram_js",
    "rare_coverage",
    "ref_ppl_p50",
    "name_tv",
]


def load(summary: Path) -> pd.DataFrame:
    if not summary.is_file():
        raise DataError(f"{summary}: no such summary; run `synthloop sweep` (or `synthloop run`) first")
    df = pd.read_csv(summary)
    if "generation" not in df.columns:
        raise DataError(f"{summary}: not a synthloop summary (no 'generation' column)")
    if "arm" not in df.columns:  # a single loop's reports/summary.csv
        df["arm"], df["seed"], df["run"] = "loop", 0, "loop"
    return df


def _save(fig, out: Path) -> None:
    plots.save_png(fig, out, dpi=90)


def with_deltas(df: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Adds <metric>_delta: the change since the same run's generation 0."""
    base = df[df["generation"] == 0].set_index("run")[metrics]
    out = df.copy()
    for m in metrics:
        out[f"{m}_delta"] = out[m] - out["run"].map(base[m])
    return out


def curves(df: pd.DataFrame, metrics: list[str], out: Path, title: str, delta: bool = False) -> None:
    plt = plots.pyplot()
    from matplotlib.ticker import MaxNLocator

    cols = 4
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), constrained_layout=True, squeeze=False)
    color = _palette(plt, df["arm"].nunique())
    for ax, metric in zip(axes.flat, metrics):
        column = f"{metric}_delta" if delta else metric
        for i, (arm, g) in enumerate(df.groupby("arm", sort=False)):
            stats = g.groupby("generation")[column].agg(["mean", "std"]).fillna(0.0)
            x = stats.index.to_numpy()
            ax.plot(x, stats["mean"], marker="o", ms=3, color=color(i), label=arm)
            ax.fill_between(
                x, stats["mean"] - stats["std"], stats["mean"] + stats["std"], color=color(i), alpha=0.15, lw=0
            )
        if delta:
            ax.axhline(0, color="grey", lw=0.8)
        ax.set_title(f"{'Δ ' if delta else ''}{metric}", fontsize=10)
        ax.set_xlabel("generation")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), fontsize=9)
    fig.suptitle(title)
    _save(fig, out)
    plt.close(fig)


def headline(df: pd.DataFrame, out: Path, title: str) -> bool:
    """The report's one-glance figure: HEADLINE's panels side by side, one line per arm.

    An arm whose curve would squash the others' (its largest |value| more than 4x the
    median arm's) is drawn off the scale, with its final value written at the edge; SYMLOG's
    panels show every arm on a symmetric log scale instead."""
    panels = [(c, t) for c, t in HEADLINE if c in df.columns]
    if not panels:
        return False
    plt = plots.pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), constrained_layout=True, squeeze=False)
    color = _palette(plt, df["arm"].nunique())
    for ax, (column, label) in zip(axes.flat, panels):
        means = {arm: g.groupby("generation")[column].mean() for arm, g in df.groupby("arm", sort=False)}
        if column in SYMLOG:
            ax.set_yscale("symlog", linthresh=0.1)
            wild = set()
        else:
            wild = _wild({arm: float(m.abs().max()) for arm, m in means.items()})
        for i, (arm, m) in enumerate(means.items()):
            ax.plot(m.index, m.to_numpy(), marker="o", ms=3, color=color(i), label=arm)
        tame = [m for arm, m in means.items() if arm not in wild]
        if wild and tame:
            low = min(float(m.min()) for m in tame)
            high = max(float(m.max()) for m in tame)
            pad = 0.1 * (high - low or 1.0)
            ax.set_ylim(low - pad, high + 3 * pad)
            _notes(
                ax,
                [f"{arm} off scale: {means[arm].iloc[-1]:+.3g} at gen {means[arm].index[-1]}" for arm in sorted(wild)],
            )
        if column.endswith("_delta") or column in SYMLOG:  # zero: no change; a calibrated model
            ax.axhline(0, color="grey", lw=0.8)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("generation")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), fontsize=9)
    fig.suptitle(f"{title} (mean over seeds)")
    _save(fig, out)
    plt.close(fig)
    return True


def _palette(plt, n: int):
    """One colour per arm: tab10 up to 10 arms, tab20 up to 20 (no two arms share one)."""
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return lambda i: cmap(i % cmap.N)


def _notes(ax, lines: list[str]) -> None:
    """Small lines of text down the panel's top-left corner (what a panel leaves out)."""
    for n, line in enumerate(lines):
        ax.annotate(line, xy=(0.02, 0.97 - 0.07 * n), xycoords="axes fraction", va="top", fontsize=8)


def _wild(spans: dict[str, float]) -> set[str]:
    """The arms whose span is more than 4x the median arm's: drawn off the scale, not squashing the rest."""
    typical = float(pd.Series(spans).median())
    return {arm for arm, v in spans.items() if typical > 0 and v > 4 * typical}


def ref_histograms(df: pd.DataFrame, root: Path, out: Path) -> bool:
    """Per arm: the mean histogram over seeds at every generation. False when the runs' files are gone."""
    if "run_dir" not in df.columns:
        return False
    plt = plots.pyplot()
    arms = list(dict.fromkeys(df["arm"]))
    last = int(df["generation"].max())
    cols = min(4, len(arms))
    rows = -(-len(arms) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(4.2 * cols, 3.0 * rows), constrained_layout=True, squeeze=False, sharex=True
    )
    cmap = plt.get_cmap("viridis")
    for ax, arm in zip(axes.flat, arms):
        dirs = df[df["arm"] == arm]["run_dir"].unique()
        for k in range(last + 1):
            hists = [root / d / "gens" / str(k) / "ref_ppl_hist.json" for d in dirs]
            hists = [io.read_json(h) for h in hists if h.is_file()]
            if not hists:
                continue
            shares = [[c / max(1, sum(h["counts"])) for c in h["counts"]] for h in hists]
            mean = [sum(col) / len(col) for col in zip(*shares)]
            ax.stairs(mean, hists[0]["edges"], color=cmap(k / max(1, last)), label=f"gen {k}")
        ax.set_xscale("log")
        ax.set_title(arm, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(arms) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.supxlabel("perplexity of a sample under the generation-0 model (log)")
    fig.supylabel("share of samples")
    _save(fig, out)
    plt.close(fig)
    return True


def final_table(df: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Per arm at the last generation: mean ± std over seeds of each metric, and its change since
    generation 0 with the change's 95% confidence interval (t over seeds)."""
    last = int(df["generation"].max())
    final = df[df["generation"] == last]
    rows = []
    for arm, g in final.groupby("arm", sort=False):
        row = {"arm": arm, "seeds": g["seed"].nunique()}
        for m in metrics:
            row[m] = _pm(g[m])
            row[f"Δ{m}"] = ci_text(g[f"{m}_delta"])
        rows.append(row)
    return pd.DataFrame(rows)


def _pm(values: pd.Series, signed: bool = False) -> str:
    mean, std = values.mean(), values.std() if len(values) > 1 else 0.0
    fmt = "+.3g" if signed else ".3g"
    return f"{mean:{fmt}} ± {std:.2g}"


def mean_ci(values, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student-t confidence interval of the mean; NaN bounds below 2 values."""
    from scipy import stats

    v = pd.Series(values, dtype=float).dropna()
    mean = float(v.mean()) if len(v) else float("nan")
    if len(v) < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / len(v) ** 0.5)
    return mean, mean - half, mean + half


def ci_text(values, fmt: str = "+.3g") -> str:
    """The mean and its 95% CI as text ("+0.29 [+0.28, +0.31]"); the mean alone below 2 values."""
    mean, low, high = mean_ci(values)
    return f"{mean:{fmt}}" if low != low else f"{mean:{fmt}} [{low:{fmt}}, {high:{fmt}}]"


def paired(df: pd.DataFrame, metric: str, a: str, b: str) -> dict:
    """Arm a minus arm b in `metric`'s change since generation 0 at the last generation, paired by
    seed (the seeds both ran): mean difference, its 95% CI, the paired t-test's p and the seed count."""
    from scipy import stats

    last = df[df["generation"] == df["generation"].max()]
    col = f"{metric}_delta"
    x = last[last["arm"] == a].set_index("seed")[col]
    y = last[last["arm"] == b].set_index("seed")[col]
    seeds = x.index.intersection(y.index)
    diff = x[seeds] - y[seeds]
    mean, low, high = mean_ci(diff)
    p = float(stats.ttest_rel(x[seeds], y[seeds]).pvalue) if len(seeds) > 1 and diff.std() > 0 else float("nan")
    return {"a": a, "b": b, "metric": metric, "diff": mean, "low": low, "high": high, "p": p, "seeds": len(seeds)}


def paired_table(df: pd.DataFrame, metric: str, pairs: list[tuple[str, str]]) -> pd.DataFrame:
    rows = []
    for a, b in pairs:
        r = paired(df, metric, a, b)
        ci = "" if r["low"] != r["low"] else f"[{r['low']:+.3g}, {r['high']:+.3g}]"
        rows.append(
            {
                "a − b": f"{a} − {b}",
                f"Δ{metric} difference": f"{r['diff']:+.3g}",
                "95% CI": ci,
                "paired t p": "" if r["p"] != r["p"] else f"{r['p']:.3g}",
                "seeds": r["seeds"],
                "verdict": _verdict(r),
            }
        )
    return pd.DataFrame(rows)


def _verdict(r: dict) -> str:
    if r["low"] != r["low"]:
        return "too few seeds"
    if r["low"] > 0:
        return "a higher"
    if r["high"] < 0:
        return "a lower"
    return "not resolved (CI spans 0)"


def costs(df: pd.DataFrame, root: Path) -> pd.DataFrame:
    """Per run: what its generations 1..G cost (generation 0, shared by the arms, left out) and
    test_ce at G: CPU-seconds (each generation's .timing.json, when its files are there), generated
    tokens, real training data (tokens when the run mixed by tokens, else words) and money."""
    last = int(df["generation"].max())
    later = df[df["generation"] > 0]
    out = later.groupby("run", sort=False).agg(arm=("arm", "first"), seed=("seed", "first"))
    if "completion_tokens" in later:
        out["generated_tokens"] = later.groupby("run")["completion_tokens"].sum()
    real = "real_tokens" if "real_tokens" in later and later["real_tokens"].notna().all() else "real_words"
    if real in later:
        out[real] = later.groupby("run")[real].sum()
    if "cost" in later and later["cost"].sum() > 0:
        out["money"] = later.groupby("run")["cost"].sum()
    if "run_dir" in df.columns:
        out["cpu_seconds"] = [_cpu(root / d, last) for d in df.groupby("run", sort=False)["run_dir"].first()[out.index]]
    out["test_ce"] = df[df["generation"] == last].set_index("run")["test_ce"]
    return out.reset_index()


def _cpu(run_dir: Path, last: int) -> float:
    files = [run_dir / "gens" / str(k) / ".timing.json" for k in range(1, last + 1)]
    if not all(f.is_file() for f in files):
        return float("nan")
    return sum(t["cpu_s"] for f in files for t in io.read_json(f).values())


FRONTIER_AXES = [
    ("cpu_seconds", "CPU-seconds, generations 1..G"),
    ("generated_tokens", "generated tokens"),
    ("real_tokens", "real tokens trained on"),
    ("real_words", "real words trained on"),
    ("money", "money (generate.price_per_mtok)"),
]


def frontier(cost: pd.DataFrame, out: Path, title: str) -> bool:
    """Real-data quality at the last generation against each cost, one point per arm (mean over
    seeds, 95% CI bars); the arms no other arm beats on both axes are joined: the frontier. An arm
    far worse than the rest (its distance above the best more than 4x the median arm's) is left
    out, its value written at the edge, so it does not squash the others."""
    axes_ = [(c, label) for c, label in FRONTIER_AXES if c in cost and cost[c].notna().any()]
    if not axes_:
        return False
    plt = plots.pyplot()
    width = max(7.0, 4.6 * len(axes_))
    fig, axes = plt.subplots(1, len(axes_), figsize=(width, 4.2), constrained_layout=True, squeeze=False)
    color = _palette(plt, cost["arm"].nunique())
    means = cost.groupby("arm", sort=False)["test_ce"].mean()
    wild = _wild((means - means.min()).to_dict())
    for ax, (col, label) in zip(axes.flat, axes_):
        points = []
        for i, (arm, g) in enumerate(cost.groupby("arm", sort=False)):
            if arm in wild:
                continue
            y, low, high = mean_ci(g["test_ce"])
            x = float(g[col].mean())
            err = [[y - low], [high - y]] if low == low else None
            ax.errorbar(x, y, yerr=err, fmt="o", color=color(i), label=arm, capsize=3)
            points.append((x, y))
        best = sorted(points)
        edge = [best[0]]
        for x, y in best[1:]:
            if y < edge[-1][1]:
                edge.append((x, y))
        ax.plot(*zip(*edge), color="grey", lw=1, ls="--", zorder=0)
        _notes(ax, [f"{arm} left out: {means[arm]:.3g} nats" for arm in sorted(wild)])
        ax.set_xlabel(label)
        ax.set_ylabel("real test cross-entropy at G (nats)")
        ax.grid(alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 3), fontsize=9)
    fig.suptitle(f"{title}: quality against cost (dashed: the frontier)", fontsize=11)
    _save(fig, out)
    plt.close(fig)
    return True


def markdown_table(table: pd.DataFrame) -> str:
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def check_pairs(df: pd.DataFrame, pairs: list[tuple[str, str]], summary: Path) -> None:
    arms = list(dict.fromkeys(df["arm"]))
    for a, b in pairs:
        for arm in (a, b):
            if arm not in arms:
                raise DataError(f"--pair {a}:{b}: {summary} has no arm {arm!r} (it has {', '.join(arms)})")


def write_report(
    summary: Path,
    out: Path,
    title: str = "synthloop report",
    root: Path | None = None,
    pairs: list[tuple[str, str]] | None = None,
) -> Path:
    """report.md + headline.png, metrics.png, delta.png, ref_ppl_hist.png in `out`; returns report.md's path.
    `pairs` (a, b): the orderings to test, paired by seed (default: every arm against the first)."""
    root = root or Path.cwd()
    df = load(summary)
    check_pairs(df, pairs or [], summary)
    metrics = [m for m, _, _ in METRICS if m in df.columns]
    df = with_deltas(df, metrics)
    last = int(df["generation"].max())
    curves(df, metrics, out / "metrics.png", f"{title}: metrics by generation (mean ± 1 sd over seeds)")
    curves(df, metrics, out / "delta.png", f"{title}: change since generation 0", delta=True)
    hist = ref_histograms(df, root, out / "ref_ppl_hist.png")
    head = headline(df, out / "headline.png", title)
    cost = costs(df, root)
    front = frontier(cost, out / "frontier.png", title)
    arms = list(dict.fromkeys(df["arm"]))
    pairs = pairs or [(a, arms[0]) for a in arms[1:]]
    seeds = df.groupby("arm")["seed"].nunique()
    text = [
        f"# {title}",
        "",
        f"{df['arm'].nunique()} arms x {int(seeds.max())} seeds, generations 0-{last}; source `{summary}`.",
        "",
        *(["![headline](headline.png)", ""] if head else []),
        f"## Generation {last} (mean ± sd over seeds; Δ = change since generation 0)",
        "",
        markdown_table(final_table(df, [m for m in TABLE if m in metrics])),
        "",
        *(
            [
                f"## Orderings, paired by seed (Δtest_ce at generation {last}; 95% CI of the difference)",
                "",
                markdown_table(paired_table(df, "test_ce", pairs)),
                "",
            ]
            if pairs
            else []
        ),
        *(["## Quality against cost", "", "![frontier](frontier.png)", ""] if front else []),
        "## Metrics by generation",
        "",
        "![metrics](metrics.png)",
        "",
        "## Change since generation 0",
        "",
        "![delta](delta.png)",
        "",
    ]
    if hist:
        text += [
            "## Tails: sample perplexity under the generation-0 model",
            "",
            "![ref_ppl_hist](ref_ppl_hist.png)",
            "",
        ]
    text += ["## Metrics", ""] + [f"- `{m}`: {what} ({good} is better)" for m, what, good in METRICS if m in metrics]
    report = out / "report.md"
    io.write_text(report, "\n".join(text) + "\n")
    return report

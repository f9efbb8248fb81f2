"""The sweep report: deltas vs generation 0, mean ± sd over seeds, report.md and plots."""

from __future__ import annotations

import pandas as pd
import pytest

from synthloop.experiments.compare import costs, final_table, load, mean_ci, paired, with_deltas, write_report
from synthloop.io import DataError


def frame() -> pd.DataFrame:
    rows = []
    for arm, slope in (("replace", 1.0), ("accumulate", 0.1)):
        for seed, start in ((0, 5.0), (1, 6.0)):
            for g in range(3):
                rows.append(
                    {
                        "arm": arm,
                        "seed": seed,
                        "run": f"{arm}-s{seed}",
                        "generation": g,
                        "test_ce": start + slope * g,
                        "distinct_2": 0.9 - 0.1 * g * slope,
                    }
                )
    return pd.DataFrame(rows)


def test_deltas_are_per_run_changes_since_generation_zero():
    df = with_deltas(frame(), ["test_ce"])
    last = df[(df.generation == 2) & (df.arm == "replace")]
    assert list(last["test_ce_delta"]) == [2.0, 2.0]
    assert list(df[df.generation == 0]["test_ce_delta"]) == [0.0] * 4


def test_final_table_is_mean_and_sd_over_seeds():
    table = final_table(with_deltas(frame(), ["test_ce"]), ["test_ce"]).set_index("arm")
    # replace at gen 2: seeds give 7 and 8 -> mean 7.5, sd 0.71; delta +2 for both
    assert table.loc["replace", "test_ce"] == "7.5 ± 0.71"
    assert table.loc["replace", "Δtest_ce"] == "+2 [+2, +2]"  # the change's 95% CI: every seed rose by 2
    assert table.loc["accumulate", "Δtest_ce"] == "+0.2 [+0.2, +0.2]"
    assert table.loc["replace", "seeds"] == 2


def test_write_report_makes_markdown_and_plots(tmp_path):
    summary = tmp_path / "summary.csv"
    frame().to_csv(summary, index=False)
    report = write_report(summary, tmp_path / "report", title="t")
    text = report.read_text()
    assert "| replace | 2 | 7.5 ± 0.71 | +2 [+2, +2] |" in text
    assert "| accumulate − replace | -1.8 | [-1.8, -1.8] |" in text  # paired by seed against the first arm
    assert "![metrics](metrics.png)" in text and "![headline](headline.png)" in text
    assert "![frontier](frontier.png)" not in text  # no cost columns, no frontier
    for png in ("metrics.png", "delta.png", "headline.png"):
        assert (tmp_path / "report" / png).read_bytes()[:4] == b"\x89PNG"


def test_report_tests_the_orderings_it_is_given(tmp_path):
    summary = tmp_path / "summary.csv"
    frame().to_csv(summary, index=False)
    text = write_report(summary, tmp_path / "r", pairs=[("replace", "accumulate")]).read_text()
    assert "| replace − accumulate | +1.8 | [+1.8, +1.8] |" in text and "accumulate − replace" not in text
    with pytest.raises(DataError, match="has no arm 'dilution'"):
        write_report(summary, tmp_path / "r", pairs=[("replace", "dilution")])


def test_single_loop_summary_is_one_arm(tmp_path):
    summary = tmp_path / "summary.csv"
    frame()[lambda d: d.run == "replace-s0"].drop(columns=["arm", "seed", "run"]).to_csv(summary, index=False)
    assert set(load(summary)["arm"]) == {"loop"}


def test_missing_or_foreign_summary_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no such summary"):
        load(tmp_path / "nope.csv")
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="not a synthloop summary"):
        load(tmp_path / "x.csv")


def test_headline_draws_an_arm_that_would_squash_the_others_off_scale(tmp_path, monkeypatch):
    from synthloop.experiments import compare

    df = frame()
    wild = df[df.arm == "replace"].assign(
        arm="wild", run=lambda d: d.run + "w", test_ce=lambda d: 5 + 40 * d.generation
    )
    notes = []
    real_annotate = __import__("matplotlib.axes", fromlist=["Axes"]).Axes.annotate
    monkeypatch.setattr(
        "matplotlib.axes.Axes.annotate",
        lambda ax, text, *a, **k: notes.append(text) or real_annotate(ax, text, *a, **k),
    )
    assert compare.headline(with_deltas(pd.concat([df, wild]), ["test_ce"]), tmp_path / "h.png", "t")
    assert notes == ["wild off scale: +80 at gen 2"]
    notes.clear()
    assert compare.headline(with_deltas(df, ["test_ce"]), tmp_path / "h2.png", "t") and notes == []
    assert (tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"


def test_mean_ci_is_students_t():
    mean, low, high = mean_ci([1.0, 2.0, 3.0])
    # sd 1, n 3: half-width t(0.975, 2) / sqrt(3) = 4.303 / 1.732
    assert mean == 2.0 and high - mean == pytest.approx(4.3027 / 3**0.5, rel=1e-4) and mean - low == high - mean
    assert mean_ci([4.0])[1] != mean_ci([4.0])[1]  # one value: no interval (NaN)


def test_paired_difference_pairs_by_seed():
    df = with_deltas(frame(), ["test_ce"])
    df.loc[(df.arm == "replace") & (df.seed == 1) & (df.generation == 2), "test_ce"] += 1.0  # seed 1 rose by 3
    df = with_deltas(df.drop(columns="test_ce_delta"), ["test_ce"])
    r = paired(df, "test_ce", "replace", "accumulate")
    assert r["seeds"] == 2 and r["diff"] == pytest.approx(((2 - 0.2) + (3 - 0.2)) / 2)
    assert r["low"] < r["diff"] < r["high"] and 0 < r["p"] < 1


def test_costs_sum_generations_after_zero(tmp_path):
    df = frame()
    df["completion_tokens"] = [0 if g == 0 else 100 for g in df["generation"]]
    df["real_words"] = 50
    out = costs(df, tmp_path).set_index("run")
    assert out.loc["replace-s0", "generated_tokens"] == 200 and out.loc["replace-s0", "real_words"] == 100
    assert out.loc["replace-s1", "test_ce"] == 8.0


def test_frontier_leaves_out_an_arm_far_worse_than_the_rest(tmp_path, monkeypatch):
    from synthloop.experiments import compare

    df = frame()
    wild = df[df.arm == "replace"].assign(
        arm="wild", run=lambda d: d.run + "w", test_ce=lambda d: 5 + 40 * d.generation
    )
    df = pd.concat([df, wild])
    df["completion_tokens"] = 100
    notes = []
    real_annotate = __import__("matplotlib.axes", fromlist=["Axes"]).Axes.annotate
    monkeypatch.setattr(
        "matplotlib.axes.Axes.annotate",
        lambda ax, text, *a, **k: notes.append(text) or real_annotate(ax, text, *a, **k),
    )
    assert compare.frontier(costs(df, tmp_path), tmp_path / "f.png", "t")
    assert notes == ["wild left out: 85 nats"]  # one cost axis here: generated tokens
    notes.clear()
    assert compare.frontier(costs(df[df.arm != "wild"], tmp_path), tmp_path / "f2.png", "t") and notes == []

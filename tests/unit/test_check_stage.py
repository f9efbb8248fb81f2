"""The stage table: stage names and --gen ranges (tiny profile: G = 2), ids, run order."""

from __future__ import annotations

import pytest

from synthloop.config import ConfigError
from synthloop.stages import table


@pytest.mark.parametrize(
    "name, gen",
    [
        ("prepare", None),
        ("report", None),
        ("mix", 0),
        ("train", 0),
        ("evaluate", 0),
        ("evaluate", 2),
        ("generate", 1),
        ("generate", 2),
        ("grade", 1),
        ("grade", 2),
        ("mix", 2),
    ],
)
def test_valid(tiny, name, gen):
    assert table.check(name, gen, tiny.loop.generations).name == name


def test_unknown_stage_lists_the_stages(tiny):
    with pytest.raises(ConfigError, match="unknown stage 'trian'") as info:
        table.check("trian", 1, tiny.loop.generations)
    assert all(s in str(info.value) for s in table.STAGES)


@pytest.mark.parametrize(
    "name, gen, match",
    [
        ("train", None, "between 0 and 2"),
        ("mix", 3, "between 0 and 2"),
        ("evaluate", -1, "between 0 and 2"),
        ("generate", 0, "between 1 and 2"),
        ("grade", None, "between 1 and 2"),
        ("grade", 3, "between 1 and 2"),
        ("prepare", 0, "drop --gen"),
        ("report", 1, "drop --gen"),
    ],
)
def test_invalid_gen(tiny, name, gen, match):
    with pytest.raises(ConfigError, match=match):
        table.check(name, gen, tiny.loop.generations)


def test_stage_ids_are_dvc_names():
    assert [table.stage_id(n, g) for n, g in [("prepare", None), ("mix", 0), ("mix", 3), ("report", None)]] == [
        "prepare",
        "mix0",
        "mix@3",
        "report",
    ]


def test_plan_runs_generation_zero_on_real_data_then_the_loop():
    ids = [table.stage_id(s.name, g) for s, g in table.plan(2)]
    assert ids == [
        "prepare",
        "mix0",
        "train0",
        "evaluate0",
        "generate@1",
        "grade@1",
        "mix@1",
        "train@1",
        "evaluate@1",
        "generate@2",
        "grade@2",
        "mix@2",
        "train@2",
        "evaluate@2",
        "report",
    ]


def test_every_stage_reads_only_what_an_earlier_stage_wrote(tmp_path, tiny):
    """In plan order, each input exists by the time the stage runs (prepare reads the corpus)."""
    from synthloop.layout import Layout

    lay = Layout.of(tiny, tmp_path)
    written: set = set()
    for stage, gen in table.plan(tiny.loop.generations):
        reads, writes = table.files(lay, stage, gen)
        for path in reads:
            assert path == lay.corpus or path == lay.gens or any(path == w or w in path.parents for w in written), (
                stage.name,
                gen,
                path,
            )
        written |= set(writes)

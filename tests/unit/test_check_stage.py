"""runner.check_stage: stage names and --gen ranges (tiny profile: G = 2)."""

from __future__ import annotations

import pytest

from flows.config import ConfigError
from flows.runner import STAGES, check_stage


@pytest.mark.parametrize("name, gen", [
    ("prepare", None), ("report", None),
    ("mix", 0), ("train", 0), ("evaluate", 0), ("evaluate", 2),
    ("generate", 1), ("generate", 2), ("grade", 1), ("grade", 2), ("mix", 2),
])
def test_valid(tiny, name, gen):
    check_stage(name, gen, tiny)


def test_unknown_stage_lists_the_stages(tiny):
    with pytest.raises(ConfigError, match="unknown stage 'trian'") as info:
        check_stage("trian", 1, tiny)
    assert all(s in str(info.value) for s in STAGES)


@pytest.mark.parametrize("name, gen, match", [
    ("train", None, "between 0 and 2"),
    ("mix", 3, "between 0 and 2"),
    ("evaluate", -1, "between 0 and 2"),
    ("generate", 0, "between 1 and 2"),
    ("grade", None, "between 1 and 2"),
    ("grade", 3, "between 1 and 2"),
    ("prepare", 0, "drop --gen"),
    ("report", 1, "drop --gen"),
])
def test_invalid_gen(tiny, name, gen, match):
    with pytest.raises(ConfigError, match=match):
        check_stage(name, gen, tiny)

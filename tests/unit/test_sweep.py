"""Sweep specs, run plans, generation-0 sharing keys and the resume ledger."""

from __future__ import annotations

import pytest

from synthloop.config import ConfigError, load_params
from synthloop.experiments.sweep import NOT_GEN0, grid_spec, override, parse_spec, plan
from synthloop.keys import params_hash
from synthloop.ledger import Ledger
from tests.conftest import REPO, tiny_params, write_params


@pytest.fixture
def base(tmp_path):
    write_params(tmp_path, tiny_params(tmp_path / "train.txt", tmp_path / "test.txt"))
    return tmp_path


def spec(**kw):
    raw = {"name": "s", "seeds": [0, 1], "arms": {"replace": {}, "acc": {"mix.strategy": "accumulate"}}}
    raw.update(kw)
    return parse_spec(raw, "sweep.yaml")


def test_plan_is_seed_major_with_own_folders_and_shared_data(base):
    runs = plan(spec(), base)
    assert [r.name for r in runs] == ["replace-s0", "acc-s0", "replace-s1", "acc-s1"]
    assert runs[1].params.mix.strategy == "accumulate" and runs[2].params.loop.seed == 1
    assert len({r.params.paths.data for r in runs}) == 1
    assert len({r.params.paths.gens for r in runs}) == 4
    assert runs[0].params.paths.gens == "sweeps/s/runs/replace-s0/gens"


def test_prepared_data_is_shared_only_between_runs_with_the_same_split(base, tmp_path):
    runs = plan(spec(), base)
    assert len({r.params.paths.data for r in runs}) == 1  # data.test_corpus given: the seed splits nothing
    write_params(base, tiny_params(tmp_path / "train.txt", None))  # prepare splits data.corpus by loop.seed
    runs = plan(spec(), base)
    by_seed = {(r.seed, r.params.paths.data) for r in runs}
    assert len({d for _, d in by_seed}) == 2 and len(by_seed) == 2  # one folder per seed, shared by its arms


def test_generation_zero_is_shared_only_where_it_cannot_differ(base):
    r0, a0, r1, _ = plan(spec(), base)
    assert params_hash(r0.params, drop=NOT_GEN0) == params_hash(a0.params, drop=NOT_GEN0)
    assert params_hash(r0.params, drop=NOT_GEN0) != params_hash(r1.params, drop=NOT_GEN0)  # other seed
    steps = plan(spec(arms={"a": {}, "b": {"train.steps": 31}}), base)
    assert params_hash(steps[0].params, drop=NOT_GEN0) != params_hash(steps[1].params, drop=NOT_GEN0)


def test_self_and_teacher_arms_share_generation_zero(base):
    teacher = {"generate.source": "teacher", "generate.teacher": "models/t.gguf", "generate.price_per_mtok": [1, 2]}
    own, taught = plan(spec(seeds=[0], arms={"self": {}, "teacher": teacher}), base)
    assert (own.params.generate.source, taught.params.generate.source) == ("self", "teacher")
    assert params_hash(own.params, drop=NOT_GEN0) == params_hash(taught.params, drop=NOT_GEN0)
    assert own.params.paths.data == taught.params.paths.data


def test_unknown_override_key_names_it_with_a_hint(base):
    with pytest.raises(ConfigError, match=r"arm acc: unknown key 'mix.stratgy'; did you mean 'mix.strategy'\?"):
        plan(spec(arms={"acc": {"mix.stratgy": "accumulate"}}), base)


def test_bad_override_value_is_a_params_error(base):
    with pytest.raises(ConfigError, match="arm bad.*mix.strategy = 'nope' is not allowed"):
        plan(spec(arms={"bad": {"mix.strategy": "nope"}}), base)


@pytest.mark.parametrize(
    "raw,match",
    [
        ({"name": "s", "seeds": [], "arms": {"a": {}}}, "seeds"),
        ({"name": "s", "seeds": [0], "arms": {}}, "arms"),
        ({"name": "../up", "seeds": [0], "arms": {"a": {}}}, "name"),
        ({"name": "s", "seeds": [0], "arms": {"a/b": {}}}, "arm name 'a/b'"),
        ({"name": "s", "seeds": [0], "arms": {"a": {}}, "sed": 1}, "sed"),
    ],
)
def test_bad_spec_is_one_clear_line(raw, match):
    with pytest.raises(ConfigError, match=match) as err:
        parse_spec(raw, "sweep.yaml")
    assert "\n" not in str(err.value)


def test_grid_is_the_cartesian_product():
    s = grid_spec(
        "g", "params.yaml", {"mix.strategy": ["replace", "accumulate"], "generate.temperature": [1.0, 0.7]}, [0]
    )
    assert list(s.arms) == [
        "strategy=replace_temperature=1.0",
        "strategy=replace_temperature=0.7",
        "strategy=accumulate_temperature=1.0",
        "strategy=accumulate_temperature=0.7",
    ]
    assert s.arms["strategy=accumulate_temperature=0.7"] == {"mix.strategy": "accumulate", "generate.temperature": 0.7}


def test_override_leaves_the_base_untouched():
    base = {"mix": {"strategy": "replace"}}
    assert override(base, {"mix.strategy": "accumulate"}, "x") == {"mix": {"strategy": "accumulate"}}
    assert base == {"mix": {"strategy": "replace"}}


def test_ledger_resumes_and_distrusts_everything_after_a_rerun(tmp_path):
    path = tmp_path / ".ledger.json"
    book = Ledger(path, "k1")
    book.record("prepare", None)
    book.record("mix", 0)
    again = Ledger(path, "k1")
    assert again.done("prepare", None) and again.done("mix", 0) and not again.done("train", 0)
    again.record("train", 0)  # something ran again: later entries are no longer trusted in this run
    assert not again.done("mix", 0)
    assert not Ledger(path, "k2").done("prepare", None)  # other params start over


def test_a_pretrained_source_gets_its_own_data_folder(base):
    arms = {"scratch": {}, "tiny": {"model.source": "models/a", "train.init": "continue"}}
    arms["other"] = {"model.source": "models/b", "train.init": "continue"}
    runs = plan(spec(seeds=[0], arms=arms), base)
    assert len({r.params.paths.data for r in runs}) == 3  # each source brings its own tokenizer and base


def test_an_arm_may_have_its_own_seeds(tmp_path):
    """arms.<arm>.seeds: the headline arms on 5 seeds, the rest on 3, seed-major order."""
    from synthloop.experiments.sweep import parse_spec, plan

    (tmp_path / "params.yaml").write_text((REPO / "profiles" / "tiny.yaml").read_text())
    spec = parse_spec(
        {"name": "s", "seeds": [0, 1], "arms": {"a": {"seeds": [0, 1, 2]}, "b": {"mix.strategy": "accumulate"}}}, "t"
    )
    runs = plan(spec, tmp_path)
    assert [r.name for r in runs] == ["a-s0", "b-s0", "a-s1", "b-s1", "a-s2"]
    assert runs[1].params.mix.strategy == "accumulate" and runs[4].params.loop.seed == 2
    with pytest.raises(ConfigError, match="arms.a.seeds"):
        parse_spec({"name": "s", "seeds": [0], "arms": {"a": {"seeds": "0"}}}, "t")


def test_generation_0_is_shared_whatever_the_later_budget_when_it_has_its_own_steps(tmp_path):
    from synthloop.experiments.sweep import gen0_key

    tiny = load_params(REPO / "profiles" / "tiny.yaml")
    with_steps0 = tiny.model_copy(update={"train": tiny.train.model_copy(update={"steps0": 50})})
    epochs = with_steps0.model_copy(
        update={"train": with_steps0.train.model_copy(update={"budget": "epochs", "steps": 99})}
    )
    assert gen0_key(with_steps0) == gen0_key(epochs)
    scratch_epochs = tiny.model_copy(update={"train": tiny.train.model_copy(update={"budget": "epochs"})})
    assert gen0_key(tiny) != gen0_key(scratch_epochs)  # without steps0, the budget decides generation 0 too

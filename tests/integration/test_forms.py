"""The deployment forms: the parameter schema Prefect renders, and what it and the flow refuse.

No server: the schema is what `synthloop ui` registers as the deployment's
parameter_openapi_schema, and Prefect's own validator is what the server runs
when a custom run is submitted.
"""

from __future__ import annotations

import typing

import pytest
import yaml
from prefect.utilities.schema_tools import validate

from flows import deployments
from synthloop import forms
from synthloop.config import ConfigError, Params, load_params
from tests.conftest import REPO

PARAMS = REPO / "params.yaml"


@pytest.fixture(scope="module")
def schema() -> dict:
    flow = deployments.loop_flow(REPO, load_params(PARAMS))
    return flow.parameters.model_dump()


def _section(schema: dict, name: str) -> dict:
    return schema["definitions"][schema["properties"][name]["$ref"].split("/")[-1]]


def test_one_flat_group_per_params_section_in_params_yaml_order(schema):
    raw = yaml.safe_load(PARAMS.read_text())
    assert list(schema["properties"]) == list(raw) == list(Params.model_fields)
    for name in raw:
        group = schema["properties"][name]
        assert group["description"], name  # the section's one-line help from the flow docstring
        for key, spec in _section(schema, name)["properties"].items():
            assert "$ref" not in spec and "anyOf" not in spec and "allOf" not in spec, f"{name}.{key} is not flat"
            assert spec["description"], f"{name}.{key} has no description"


def test_every_params_yaml_key_is_in_the_form_with_its_default(schema):
    raw = yaml.safe_load(PARAMS.read_text())
    for name, values in raw.items():
        default = schema["properties"][name]["default"]
        fields = _section(schema, name)["properties"]
        for key, value in values.items():
            if (name, key) == ("loop", "chain"):  # asked for as a number of generations
                assert default["generations"] == len(value) and "generations" in fields
                continue
            assert key in fields, f"{name}.{key} missing from the form"
            assert default[key] == ("" if value is None else value), f"{name}.{key}"


def test_literals_are_dropdowns_and_bounds_are_min_max(schema):
    for name, info in Params.model_fields.items():
        model = info.annotation
        fields = _section(schema, name)["properties"]
        for key, field in model.model_fields.items():
            spec = fields.get(key)
            if spec is None:
                continue
            if typing.get_origin(field.annotation) is typing.Literal:
                assert spec["enum"] == list(typing.get_args(field.annotation)), f"{name}.{key}"
            if forms._optional(field.annotation) is int:  # a string: empty = null, digits = the count
                assert spec["type"] == "string" and spec["pattern"] == r"^(|[0-9]+)$", f"{name}.{key}"
                continue
            if forms._optional(field.annotation) is float:  # a string: empty = null, else a number (bounds: on submit)
                assert spec["type"] == "string" and spec["pattern"] == forms.FLOAT_PATTERN, f"{name}.{key}"
                continue
            for meta in field.metadata:
                for attr, word in (
                    ("ge", "minimum"),
                    ("le", "maximum"),
                    ("gt", "exclusiveMinimum"),
                    ("lt", "exclusiveMaximum"),
                ):
                    if getattr(meta, attr, None) is not None:
                        assert spec[word] == getattr(meta, attr), f"{name}.{key} {word}"
    assert _section(schema, "mix")["properties"]["strategy"]["enum"] == [
        "replace",
        "accumulate",
        "accumulate_subsample",
        "fixed_fraction",
        "dilution",
    ]
    real_fraction = _section(schema, "mix")["properties"]["real_fraction"]
    assert (real_fraction["minimum"], real_fraction["maximum"]) == (0, 1)


def _values(schema: dict, **changes: dict) -> dict:
    values = {name: dict(spec["default"]) for name, spec in schema["properties"].items()}
    for name, update in changes.items():
        values[name].update(update)
    return values


def test_prefect_refuses_out_of_range_and_unknown_values(schema):
    assert validate(_values(schema), schema) == []
    errors = validate(_values(schema, mix={"real_fraction": 1.5}), schema)
    assert [e.json_path for e in errors] == ["$.mix.real_fraction"]
    assert validate(_values(schema, mix={"strategy": "recycle"}), schema)
    assert validate(_values(schema, train={"steps": 0}), schema)
    assert validate(_values(schema, train={"stepz": 3}), schema)  # a typo is not silently ignored


def test_a_nullable_count_is_a_string_the_form_checks_and_the_flow_turns_back_into_an_int(schema):
    assert schema["properties"]["train"]["default"]["steps0"] == ""  # params.yaml: null
    for bad in ("abc", "-1", "1.5"):
        assert [e.json_path for e in validate(_values(schema, train={"steps0": bad}), schema)] == ["$.train.steps0"]
    assert forms.to_params(_values(schema, train={"steps0": "40"})).train.steps0 == 40
    assert forms.to_params(_values(schema, train={"steps0": ""})).train.steps0 is None
    with pytest.raises(ConfigError, match="train.steps0 = 0"):  # the cross-field rule, one line
        forms.to_params(_values(schema, train={"steps0": "0"}))


def test_form_values_round_trip_to_the_same_params():
    params = load_params(PARAMS)
    assert forms.to_params(forms.to_form(params)) == params
    tiny = load_params(REPO / "profiles" / "tiny.yaml")
    plain = {k: v.model_dump() for k, v in forms.to_form(tiny).items()}  # what Prefect hands the flow
    assert forms.to_params(plain) == tiny


def test_cross_field_rules_fail_in_the_flow_with_one_line(schema):
    """Rules a JSON schema cannot say (warmup < steps, n_head divides n_embd) are checked before any stage."""
    bad = _values(schema, train={"warmup_steps": 500})
    assert validate(bad, schema) == []  # the form lets it through ...
    with pytest.raises(ConfigError, match=r"^form: train.warmup_steps \(500\) must be below train.steps") as err:
        forms.to_params(bad)  # ... the flow's first line does not
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="model.n_embd"):
        forms.to_params(_values(schema, model={"n_head": 3}))


def test_sweep_form_is_a_grid_of_strategies_and_seeds(tmp_path):
    from synthloop.experiments import sweep as sweeps

    flow = deployments.sweep_flow(REPO)
    props = flow.parameters.model_dump()["properties"]
    assert props["strategies"]["type"] == "array" and props["strategies"]["items"]["enum"][0] == "replace"
    assert "profiles/tiny.yaml" in props["profile"]["enum"] and props["generations"]["minimum"] == 1
    assert props["workers"]["minimum"] == 1 and props["workers"]["default"] == 1  # >1: a local Dask cluster
    assert "Dask" in props["workers"]["description"]
    raw = forms.sweep_raw(["replace", "accumulate"], [0, 1], 1, "profiles/tiny.yaml", "ui-test", ".synthloop/runs/x")
    runs = sweeps.plan(sweeps.parse_spec(raw, "sweep form"), REPO)  # validates every run's params
    assert sorted(r.name for r in runs) == ["accumulate-s0", "accumulate-s1", "replace-s0", "replace-s1"]
    assert all(r.params.loop.generations == 1 for r in runs)
    assert all(str(r.folder).startswith(str(REPO / ".synthloop" / "runs" / "x")) for r in runs)
    with pytest.raises(ConfigError, match="strategy"):
        forms.sweep_raw([], [0], 1, "profiles/tiny.yaml", "x", "out")

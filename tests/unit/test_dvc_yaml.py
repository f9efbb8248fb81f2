"""dvc.yaml agrees with params.yaml (templates, params keys) and with flows.layout.Layout."""

from __future__ import annotations

import re
import shlex

import pytest
import yaml

from flows.config import load_params
from flows.layout import Layout
from flows.runner import check_stage

TEMPLATE = re.compile(r"\$\{([^}]+)\}")
FOREACH_LOCALS = {"key", "item"}


@pytest.fixture(scope="module")
def dvc(root) -> dict:
    return yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def params_dict(root) -> dict:
    return yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))


def strings(node):
    """Every string in a parsed YAML tree, mapping keys included (`- path: {cache: false}`)."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from strings(k)
            yield from strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from strings(v)
    elif isinstance(node, str):
        yield node


def lookup(tree: dict, dotted: str):
    for part in dotted.split("."):
        assert isinstance(tree, dict) and part in tree, f"'{dotted}' is not in params.yaml"
        tree = tree[part]
    return tree


def paths_of(entries) -> list[str]:
    return [next(iter(e)) if isinstance(e, dict) else e for e in entries or []]


def produced(stage: dict) -> list[str]:
    return paths_of(stage.get("outs")) + paths_of(stage.get("metrics"))


def expand(dvc: dict, params_dict: dict) -> dict[str, dict]:
    """Stage name -> body with templates substituted; foreach expanded as DVC does (name@key)."""
    def value(name: str, local: dict) -> str:
        return str(local[name] if name in local else lookup(params_dict, name))

    def sub(text: str, local: dict) -> str:
        return TEMPLATE.sub(lambda m: value(m[1], local), text)

    def render(node, local):
        if isinstance(node, dict):
            return {render(k, local): render(v, local) for k, v in node.items()}
        if isinstance(node, list):
            return [render(v, local) for v in node]
        return sub(node, local) if isinstance(node, str) else node

    out = {}
    for name, stage in dvc["stages"].items():
        if "foreach" in stage:
            for key, item in lookup(params_dict, TEMPLATE.fullmatch(stage["foreach"])[1]).items():
                out[f"{name}@{key}"] = render(stage["do"], {"key": key, "item": item})
        else:
            out[name] = render(stage, {})
    return out


def test_every_template_key_exists_in_params(dvc, params_dict):
    keys = {m for s in strings(dvc) for m in TEMPLATE.findall(s)} - FOREACH_LOCALS
    assert keys >= {"paths.data", "paths.gens", "paths.reports", "loop.chain", "data.corpus"}
    for key in keys:
        lookup(params_dict, key)


def test_every_stage_params_entry_exists(dvc, params_dict):
    for name, stage in dvc["stages"].items():
        for entry in stage.get("do", stage).get("params", []):
            assert isinstance(entry, str), f"{name}: unexpected params entry {entry!r}"
            lookup(params_dict, entry)


def test_generation_outputs_match_layout(dvc, params_dict, root):
    lay = Layout.of(load_params(root / "params.yaml"), root)
    stages = expand(dvc, params_dict)
    rel = lambda p: p.relative_to(lay.root).as_posix()  # noqa: E731
    for k, suffix in ((1, "@1"), (0, "0")):
        names = [n + suffix for n in ("generate", "grade", "mix", "train", "evaluate")]
        outs = {p for n in names if n in stages for p in produced(stages[n])}
        expected = {lay.train_set(k), lay.pool(k), lay.mix_stats(k), lay.model(k),
                    lay.metrics(k), lay.samples(k), lay.ref_hist(k)}
        if k:
            expected |= {lay.synthetic(k), lay.graded(k), lay.grade_stats(k)}
        assert outs == {rel(p) for p in expected}
    assert set(paths_of(stages["report"]["outs"])) == {rel(lay.summary), rel(lay.plot), rel(lay.ref_hist_plot)}
    assert paths_of(stages["prepare"]["outs"]) == [rel(lay.data)]
    deps = {d for s in stages.values() for d in paths_of(s.get("deps"))}
    data_deps = {d for d in deps if d.startswith(rel(lay.data) + "/")}
    assert data_deps == {rel(lay.real_train), rel(lay.real_test), rel(lay.tokenizer)}


def test_every_produced_dependency_has_a_producer(dvc, params_dict):
    stages = expand(dvc, params_dict)
    outs = {p for s in stages.values() for p in produced(s)}
    roots = {params_dict["paths"][k] for k in ("data", "gens", "reports")}
    for name, stage in stages.items():
        for dep in paths_of(stage.get("deps")):
            if dep.split("/")[0] in roots and dep not in roots:
                assert any(dep == o or dep.startswith(o + "/") for o in outs), f"{name}: {dep}"


def test_stage_commands_pass_check_stage(dvc, params_dict, root):
    params = load_params(root / "params.yaml")
    for name, stage in expand(dvc, params_dict).items():
        argv = shlex.split(stage["cmd"])
        assert argv[:2] == ["synthloop", "stage"] and argv[2] == name.split("@")[0].rstrip("0")
        gen = int(argv[argv.index("--gen") + 1]) if "--gen" in argv else None
        expected_gen = name.split("@")[1] if "@" in name else ("0" if name.endswith("0") else None)
        assert gen == (None if expected_gen is None else int(expected_gen))
        check_stage(argv[2], gen, params)

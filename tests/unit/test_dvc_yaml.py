"""dvc.yaml is the stage table's, read back through DVC's own resolver (templates, foreach, params)."""

from __future__ import annotations

import shlex
import shutil

import pytest

from synthloop.config import load_params
from synthloop.layout import Layout
from synthloop.stages import table
from synthloop.versioning import dvc_yaml


def test_dvc_yaml_is_generated_from_the_stage_table(root):
    assert (root / "dvc.yaml").read_text(encoding="utf-8") == dvc_yaml(), "run `synthloop dvc-yaml`"


@pytest.fixture(scope="module", params=["params.yaml", "profiles/tiny.yaml"])
def resolved(request, root, tmp_path_factory):
    """(params, stage name -> DVC's resolved stage) for a project with this params file."""
    from dvc.repo import Repo

    project = tmp_path_factory.mktemp("dvcyaml")
    shutil.copy(root / "dvc.yaml", project / "dvc.yaml")
    shutil.copy(root / request.param, project / "params.yaml")
    Repo.init(str(project), no_scm=True)
    with Repo(str(project)) as repo:
        stages = {s.name: s for s in repo.index.stages}
        yield load_params(project / "params.yaml"), stages, project


def _rel(path, project) -> str:
    return path.relative_to(project).as_posix() if path.is_absolute() else path.as_posix()


def test_dvc_has_exactly_the_table_plan(resolved):
    params, stages, _ = resolved
    plan = {table.stage_id(s.name, g) for s, g in table.plan(params.loop.generations)}
    assert set(stages) == plan


def test_each_dvc_stage_matches_its_table_row(resolved):
    params, stages, project = resolved
    lay = Layout.of(params, project)
    for stage, gen in table.plan(params.loop.generations):
        dvc = stages[table.stage_id(stage.name, gen)]
        argv = shlex.split(dvc.cmd)
        assert argv == ["synthloop", "stage", stage.name, *([] if gen is None else ["--gen", str(gen)])]
        table.check(argv[2], gen, params.loop.generations)
        reads, writes = table.files(lay, stage, gen)
        code = [f"synthloop/stages/{stage.name}.py", *stage.code]
        files = [d for d in dvc.deps if not hasattr(d, "params")]
        params_deps = [d for d in dvc.deps if hasattr(d, "params")]
        assert list(dict.fromkeys(d.def_path for d in files)) == [_rel(p, project) for p in reads] + code
        assert [p for d in params_deps for p in d.params] == list(stage.params_at(gen))
        outs = [(o.def_path, o.use_cache, o.metric is not None and o.metric is not False) for o in dvc.outs]
        expected = [(_rel(p, project), o.cache, o.metric) for o, p in zip(stage.writes, writes)]
        assert sorted(outs) == sorted(expected)


def test_every_dependency_inside_the_outputs_has_a_producer(resolved):
    params, stages, project = resolved
    lay = Layout.of(params, project)
    outs = {o.def_path for s in stages.values() for o in s.outs}
    roots = {_rel(lay.data, project), _rel(lay.gens, project), _rel(lay.reports, project)}
    for name, stage in stages.items():
        for dep in (d.def_path for d in stage.deps if not hasattr(d, "params")):
            if dep.split("/")[0] in roots and dep not in roots:
                assert any(dep == o or dep.startswith(o + "/") for o in outs), f"{name}: {dep}"

"""Sweeps: many loops (arms x seeds) from one spec, sharing what they can.

A spec names a base params file, overrides for every arm (`set`), the arms
(each a dict of dotted-key overrides) and the seeds. Every run gets its own
folder with its exact params.yaml, gens/ and reports/; runs whose split is the
same (data.test_corpus given, or the same loop.seed) share one prepared data folder,
and runs whose generation 0 cannot differ (same seed,
same model and training settings; only strategy, grading or sampling knobs
differ) share generation 0 through hard links instead of retraining it.
"""

from __future__ import annotations

import copy
import itertools
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .. import io
from ..config import ConfigError, Params, flatten, parse_params, read_yaml
from ..keys import content_key, params_hash
from ..layout import Layout
from ..ledger import Ledger

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.=-]*$"
# knobs that cannot change generation 0 (it trains on real data and samples at T=1)
NOT_GEN0 = (
    "paths.",
    "tracking.",
    "loop.chain",
    "grade.",
    "mix.strategy",
    "mix.real_fraction",
    "generate.temperature",
    "generate.top_k",
    "generate.top_p",
    "generate.num_samples",
    "generate.prompt",
    # who writes the data and through what: generation 0 writes none
    "generate.source",
    "generate.teacher",
    "generate.backend",
    "generate.base_url",
    "generate.model",
    "generate.route",
    "generate.api_key_env",
    "generate.max_tokens_total",
    "generate.price_per_mtok",
    "generate.timeout_s",
    "generate.concurrency",
    "generate.retries",
    "generate.max_failures",
    "train.init",
    "mix.select",
    "mix.select_power",
)
# knobs that cannot change generation 0 when it has its own step count (train.steps0)
NOT_GEN0_WITH_STEPS0 = ("train.steps", "train.budget", "train.epochs")  # its warmup it does use
# knob columns every sweep summary carries, whatever the grid
KNOBS = (
    "mix.strategy",
    "mix.real_fraction",
    "generate.temperature",
    "generate.top_k",
    "generate.top_p",
    "generate.num_samples",
    "generate.source",
    "grade.self_rule",
    "grade.self_fraction",
    "train.init",
    "train.steps",
)


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=NAME, description="Sweep name: its folder under `out` and its MLflow run.")
    params: str = Field(default="params.yaml", description="Base params file, relative to the project.")
    out: str = Field(default="sweeps", description="Folder (relative to the project) for sweep results.")
    seeds: list[int] = Field(min_length=1, description="loop.seed of each replica.")
    set: dict[str, Any] = Field(default_factory=dict, description="Dotted-key overrides for every arm.")
    arms: dict[str, dict[str, Any]] = Field(
        min_length=1,
        description="Arm name -> dotted-key overrides, and optionally `seeds` (the arm's own seeds).",
    )
    compare: list[tuple[str, str]] = Field(
        default_factory=list,
        description="[A, B] pairs: the orderings the report tests, arm A against arm B paired by seed "
        "(default: every arm against the first).",
    )


@dataclass(frozen=True)
class SweepRun:
    arm: str
    seed: int
    raw: dict[str, Any]
    params: Params
    folder: Path

    @property
    def name(self) -> str:
        return f"{self.arm}-s{self.seed}"

    @property
    def params_file(self) -> Path:
        return self.folder / "params.yaml"


def load_spec(path: Path) -> SweepSpec:
    raw = read_yaml(path, "sweep file not found; see sweeps/anchor.yaml for the format")
    return parse_spec(raw, str(path))


def parse_spec(raw: Any, source: str) -> SweepSpec:
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(map(str, err["loc"]))
        raise ConfigError(f"{source}: {key}: {err['msg']}") from None
    bad = [a for a in spec.arms if not __import__("re").match(NAME, a)]
    if bad:
        raise ConfigError(f"{source}: arm name '{bad[0]}' may hold only letters, digits and _ . = -")
    for arm, changes in spec.arms.items():
        seeds = changes.get("seeds", spec.seeds)
        if not (
            isinstance(seeds, list) and seeds and all(isinstance(x, int) and not isinstance(x, bool) for x in seeds)
        ):
            raise ConfigError(f"{source}: arms.{arm}.seeds must be a non-empty list of integers, got {seeds!r}")
    for i, pair in enumerate(spec.compare):
        for arm in pair:
            if arm not in spec.arms:
                raise ConfigError(f"{source}: compare.{i}: no arm {arm!r} (the arms: {', '.join(spec.arms)})")
    return spec


def arm_seeds(spec: SweepSpec, arm: str) -> list[int]:
    return spec.arms[arm].get("seeds", spec.seeds)


def grid_spec(name: str, params: str, grid: dict[str, list[Any]], seeds: list[int], out: str = "sweeps") -> SweepSpec:
    """A spec for the cartesian product of `grid` (dotted key -> values), e.g. from CLI flags."""
    keys = list(grid)
    arms = {}
    for values in itertools.product(*(grid[k] for k in keys)):
        label = "_".join(f"{k.split('.')[-1]}={v}" for k, v in zip(keys, values)) or "base"
        arms[label] = dict(zip(keys, values))
    return parse_spec({"name": name, "params": params, "out": out, "seeds": seeds, "arms": arms}, "sweep flags")


def override(raw: dict[str, Any], changes: dict[str, Any], source: str) -> dict[str, Any]:
    """raw params with dotted-key changes applied; unknown keys fail with a hint."""
    out = copy.deepcopy(raw)
    for dotted, value in changes.items():
        section, _, key = dotted.partition(".")
        if section not in out or not isinstance(out[section], dict) or key not in out[section]:
            import difflib

            known = [f"{s}.{k}" for s, body in raw.items() if isinstance(body, dict) for k in body]
            hint = difflib.get_close_matches(dotted, known, n=1)
            raise ConfigError(f"{source}: unknown key '{dotted}'" + (f"; did you mean '{hint[0]}'?" if hint else ""))
        out[section][key] = value
    return out


def plan(spec: SweepSpec, root: Path) -> list[SweepRun]:
    base_file = root / spec.params
    base = read_yaml(base_file, "params file not found; run from the project root or pass --params")
    parse_params(base, str(base_file))  # a clear error for a bad base file
    home = Path(spec.out) / spec.name
    runs = []
    seeds = sorted({x for arm in spec.arms for x in arm_seeds(spec, arm)}, key=_first_seen(spec))
    for seed in seeds:  # seed-major: a cut-short sweep still has whole replicas of every arm
        for arm, changes in spec.arms.items():
            if seed not in arm_seeds(spec, arm):
                continue
            changes = {k: v for k, v in changes.items() if k != "seeds"}
            source = f"sweep {spec.name}, arm {arm}"
            raw = override(override(base, spec.set, f"sweep {spec.name}, set"), changes, source)
            raw["loop"]["seed"] = seed
            data_key = prepared_data_key(parse_params(raw, source))
            folder = home / "runs" / f"{arm}-s{seed}"
            raw["paths"] = {
                "data": str(home / f"data-{data_key[:8]}"),
                "gens": str(folder / "gens"),
                "reports": str(folder / "reports"),
            }
            runs.append(SweepRun(arm, seed, raw, parse_params(raw, source), root / folder))
    return runs


def _first_seen(spec: SweepSpec):
    """Seeds in the order the spec names them (the sweep's own first, then each arm's new ones)."""
    order = list(dict.fromkeys([*spec.seeds, *(x for arm in spec.arms for x in arm_seeds(spec, arm))]))
    return order.index


def gen0_key(params: Params) -> str:
    """What decides generation 0: runs with equal keys share it."""
    extra = NOT_GEN0_WITH_STEPS0 if params.train.steps0 is not None else ()
    extra += ("train.lr",) if params.train.lr0 is not None else ()
    return params_hash(params, drop=(*NOT_GEN0, *extra))


def prepared_data_key(params: Params) -> str:
    """What decides prepare's outputs: the data and tokenizer params, the loop seed when prepare
    splits data.corpus by it (no data.test_corpus), and a pretrained model.source (its tokenizer
    and data/base). Runs with equal keys share one data folder."""
    drop = ("loop.chain", "loop.seed") if params.data.test_corpus else ("loop.chain",)
    key = params_hash(params, sections=("data", "tokenizer", "loop"), drop=drop)
    return content_key(key, params.model.source)[:16] if params.pretrained else key


def write_params(run: SweepRun) -> None:
    text = f"# sweep run {run.name}: generated by `synthloop sweep`; edit the sweep file instead\n"
    text += yaml.safe_dump(run.raw, sort_keys=False)
    if not run.params_file.is_file() or run.params_file.read_text(encoding="utf-8") != text:
        io.write_text(run.params_file, text)


def share_finished(run: SweepRun, done: list[SweepRun], root: Path) -> list[str]:
    """Mark in the run's ledger what another run already made for it: prepare and generation 0."""
    lay, book = Layout.of(run.params, root), Ledger.of(run.params, root)
    shared = []
    if lay.prepare_stats.is_file() and not book.finished:
        book.record("prepare", None)
        shared.append("prepare")
    key = gen0_key(run.params)
    donor = next((d for d in done if gen0_key(d.params) == key and Ledger.of(d.params, root).done("evaluate", 0)), None)
    if donor and book.finished == ["prepare"]:
        src, dst = Layout.of(donor.params, root).gen(0), lay.gen(0)
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst, copy_function=os.link)  # hard links: no copy, no retraining
        for name in ("mix", "train", "evaluate"):
            book.record(name, 0)
        shared.append(f"generation 0 (from {donor.name})")
    return shared


def donors(runs: list[SweepRun]) -> list[SweepRun]:
    """The first run of each group whose generation 0 is the same: it trains it, the rest share it."""
    first: dict[str, SweepRun] = {}
    for run in runs:
        first.setdefault(gen0_key(run.params), run)
    return list(first.values())


def summary_rows(spec: SweepSpec, runs: list[SweepRun], root: Path) -> list[dict[str, Any]]:
    """One row per (run, generation) of every finished run: identity, knobs, then metrics."""
    from ..stages.report import read_summary

    changed = sorted({k for a in spec.arms.values() for k in a if k != "seeds"} | set(spec.set))
    rows = []
    for run in runs:
        summary = Layout.of(run.params, root).summary
        if not summary.is_file():
            continue
        flat = flatten(run.params)
        ident = {
            "sweep": spec.name,
            "run": run.name,
            "arm": run.arm,
            "seed": run.seed,
            "run_dir": os.path.relpath(run.folder, root),
        }
        knobs = {k: flat[k] for k in (*KNOBS, *[c for c in changed if c not in KNOBS])}
        rows += [{**ident, **knobs, **r} for r in read_summary(summary)]
    return rows


def write_summary(rows: list[dict[str, Any]], path: Path) -> None:
    if rows:  # columns: every key of every row (runs may differ, e.g. graders on or off)
        io.write_csv(path, rows)

"""THE stage table: every stage declared once.

Each row says what a stage is: its id, which generations it runs for, the files it
reads and writes (names of `Layout` accessors), the params it reads (exact dotted
keys), the code DVC reruns it for, the JSON it leaves its numbers in, and what
MLflow keeps of it. Everything else derives from this table: the run order
(`plan`), the runner's checks, the stage ids in logs, Prefect task names, the
ledger, MLflow and DVC (`stage_id`), the outputs a resumed run checks, the MLflow
artifacts, and dvc.yaml itself (`synthloop dvc-yaml` writes it; a test checks it
is current and that DVC's own resolver reads the same stages back).

Files are named `accessor` (this generation's, or the loop's), `accessor:prev`
(the generation before) or `accessor:0` (generation 0's). At generation 0, a
`:prev` file, a file only later generations write, and a `:0` file that this stage or
a later one of generation 0 writes are not read.

Adding a stage: write `synthloop/stages/<name>.py` with `run(ctx) -> dict[str, float]`,
add its row here (and any new file names to layout.py), run `synthloop dvc-yaml`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import ConfigError, Params
from ..layout import Layout


def section(name: str) -> tuple[str, ...]:
    """Every key of a params section that can change a result (for a stage that reads all of it).
    Keys with a Python default are operational (retries, timeouts, checkpoint cadence): params files
    may leave them out, so DVC must not require them."""
    fields = Params.model_fields[name].annotation.model_fields
    return tuple(f"{name}.{key}" for key, field in fields.items() if field.is_required())


@dataclass(frozen=True)
class Out:
    path: str  # a Layout accessor
    cache: bool = True  # False: a small file DVC records but does not cache
    metric: bool = False


@dataclass(frozen=True)
class Stage:
    name: str
    first: int | None  # None: once per loop; else every generation from `first`
    reads: tuple[str, ...]
    writes: tuple[Out, ...]
    params: tuple[str, ...]
    params0: tuple[str, ...] | None = None  # what it reads at generation 0, when that differs
    code: tuple[str, ...] = ()  # besides synthloop/stages/<name>.py
    stats: str | None = None  # the JSON a stage's numbers are read back from when DVC says it is current
    md5: tuple[str, ...] = ()  # outputs whose DVC hash is tagged on the MLflow run
    chart: str | None = None  # its numbers are also charted on the loop run by generation, with this prefix
    artifacts: tuple[str, ...] = ()  # files and folders logged to the MLflow run

    @property
    def per_generation(self) -> bool:
        return self.first is not None

    def params_at(self, gen: int | str | None) -> tuple[str, ...]:
        return self.params0 if gen == 0 and self.params0 is not None else self.params


TABLE: tuple[Stage, ...] = (
    Stage(
        "prepare",
        None,
        reads=("corpus",),
        writes=(Out("data"),),
        params=(
            "data.corpus",
            "data.test_corpus",
            "data.test_fraction",
            "data.min_chars",
            "model.source",
            "tokenizer.vocab_size",
            "loop.seed",
            "train.block_size",
        ),
        code=("synthloop/io.py",),
        stats="prepare_stats",
        artifacts=("prepare_stats",),
    ),
    Stage(
        "generate",
        1,
        reads=("real_train", "model:prev"),
        writes=(Out("synthetic"), Out("generate_stats", cache=False)),
        params=(*section("generate"), "loop.seed"),
        code=("synthloop/models", "synthloop/backends"),
        stats="generate_stats",
        md5=("synthetic",),
        artifacts=("generate_stats",),
        chart="generate.",
    ),
    Stage(
        "grade",
        1,
        reads=("synthetic", "model:prev", "model:0", "real_train", "real_test"),
        writes=(Out("graded"), Out("grade_stats", cache=False)),
        params=(*section("grade"), "loop.seed", "generate.max_new_tokens", "generate.batch_size"),
        code=("synthloop/graders",),
        stats="grade_stats",
        md5=("graded",),
        artifacts=("grade_stats",),
        chart="grade.",
    ),
    Stage(
        "mix",
        0,
        reads=("real_train", "tokenizer", "graded", "pool:prev", "model:0"),  # model:0: mix.select's verifier
        writes=(Out("train_set"), Out("pool"), Out("mix_stats", cache=False)),
        params=(
            *(f"mix.{key}" for key in ("strategy", "real_fraction", "train_size", "unit", "select", "select_power")),
            *(f"grade.verifier_{key}" for key in ("train_size", "features", "match_length")),
            *("generate.max_new_tokens", "generate.batch_size", "loop.seed"),
        ),
        params0=("mix.train_size", "mix.train_size0", "mix.unit", "loop.seed"),  # generation 0: real data alone
        stats="mix_stats",
        md5=("train_set",),
        artifacts=("mix_stats",),
    ),
    Stage(
        "train",
        0,
        reads=("tokenizer", "train_set", "model:prev", "model:0"),  # model:0: init base on a scratch model
        writes=(Out("model"), Out("train_stats", cache=False)),
        params=(*section("model"), *section("train"), "mix.strategy", "mix.real_fraction", "loop.seed"),
        params0=(*section("model"), *section("train"), "loop.seed"),
        code=("synthloop/models",),
        stats="train_stats",
        artifacts=("model", "train_stats"),
    ),
    Stage(
        "evaluate",
        0,
        reads=("real_test", "real_train", "model:0", "model"),
        writes=(Out("samples"), Out("ref_hist", cache=False), Out("metrics", cache=False, metric=True)),
        params=(
            "evaluate.num_samples",
            "evaluate.max_test_tokens",
            "evaluate.block_size",
            "evaluate.metric_words",
            "evaluate.keep_samples",
            "generate.max_new_tokens",
            "generate.batch_size",
            "loop.seed",
        ),
        code=("synthloop/metrics", "synthloop/models"),
        stats="metrics",
        artifacts=("metrics", "samples", "ref_hist"),
        chart="",
    ),
    Stage(
        "report",
        None,
        reads=("gens",),
        writes=(Out("plot"), Out("ref_hist_plot"), Out("summary", cache=False)),
        params=("loop.chain", "loop.seed", "mix.strategy"),
        code=("synthloop/plots.py",),
        artifacts=("summary", "plot", "ref_hist_plot"),
    ),
)
STAGES: dict[str, Stage] = {s.name: s for s in TABLE}
# the order within one generation (a generation-k stage reads only what earlier rows wrote)
GENERATION = tuple(s for s in TABLE if s.per_generation)


def stage_id(name: str, gen: int | None) -> str:
    """The one spelling of a stage run, as dvc.yaml names it: prepare, mix0, mix@3, report."""
    if gen is None:
        return name
    return f"{name}0" if gen == 0 else f"{name}@{gen}"


def plan(generations: int) -> list[tuple[Stage, int | None]]:
    """Every stage of a loop with G generations, in run order."""
    once = [s for s in TABLE if not s.per_generation]
    steps: list[tuple[Stage, int | None]] = [(once[0], None)]
    for k in range(generations + 1):
        steps += [(s, k) for s in GENERATION if k >= s.first]
    return steps + [(s, None) for s in once[1:]]


def check(name: str, gen: int | None, generations: int) -> Stage:
    """The stage of `name`, when `gen` is one it runs for; else one ConfigError line."""
    if name not in STAGES:
        raise ConfigError(f"unknown stage '{name}'; choose one of: {', '.join(STAGES)}")
    stage = STAGES[name]
    if stage.per_generation:
        if gen is None or not stage.first <= gen <= generations:
            raise ConfigError(f"stage {name} needs --gen between {stage.first} and {generations} (loop.chain)")
    elif gen is not None:
        raise ConfigError(f"stage {name} runs once per loop; drop --gen")
    return stage


def _first(accessor: str) -> int:
    """The first generation that has the file (0 for files no per-generation stage writes)."""
    return next((s.first or 0 for s in TABLE if any(o.path == accessor for o in s.writes)), 0)


def path_of(lay: Layout, spec: str, k: object, prev: object) -> Path | None:
    """The path of `spec` at generation k (None: generation 0 has no such input)."""
    accessor, _, which = spec.partition(":")
    target = getattr(lay, accessor)
    if not callable(target):
        return target
    if k == 0 and (which == "prev" or (not which and _first(accessor) > 0)):
        return None
    return target(prev if which == "prev" else int(which) if which else k)


def files(lay: Layout, stage: Stage, gen: int | None, prev: object = None) -> tuple[list[Path], list[Path]]:
    """(inputs, outputs) of a stage run; `gen`/`prev` may be DVC templates ('${key}', '${item}')."""
    prev = gen - 1 if prev is None and isinstance(gen, int) and gen > 0 else prev
    reads = [path_of(lay, r, gen, prev) for r in stage.reads if not (gen == 0 and _made_later(stage, r))]
    return list(dict.fromkeys(p for p in reads if p is not None)), [
        path_of(lay, o.path, gen, prev) for o in stage.writes
    ]


def _made_later(stage: Stage, spec: str) -> bool:
    """A `:0` read that generation 0 writes in this stage or after it (train0 writes model:0; mix0
    comes before it): at generation 0 it is not an input."""
    accessor, _, which = spec.partition(":")
    if which != "0" or stage not in GENERATION:
        return False
    return any(o.path == accessor for s in GENERATION[GENERATION.index(stage) :] for o in s.writes)


def stats_file(lay: Layout, stage: Stage, gen: int | None) -> Path | None:
    return path_of(lay, stage.stats, gen, None) if stage.stats else None

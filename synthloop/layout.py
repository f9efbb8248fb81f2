"""Where every stage reads and writes: the file contract between stages.

`Layout.of(params, root)` gives the real paths; `Layout.template()` the same
accessors as dvc.yaml's templates (`${paths.gens}/${key}/model`), from which
`synthloop dvc-yaml` writes dvc.yaml. The stage table names these accessors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config import Params


@dataclass(frozen=True)
class Layout:
    root: Path
    corpus: Path
    data: Path
    gens: Path
    reports: Path

    @classmethod
    def of(cls, params: Params, root: Path) -> Layout:
        root = root.resolve()
        return cls(
            root,
            root / params.data.corpus,
            root / params.paths.data,
            root / params.paths.gens,
            root / params.paths.reports,
        )

    @classmethod
    def template(cls) -> Layout:
        """The paths as dvc.yaml spells them (generation k is `${key}`, k-1 `${item}` in its foreach)."""
        return cls(
            Path(), Path("${data.corpus}"), Path("${paths.data}"), Path("${paths.gens}"), Path("${paths.reports}")
        )

    # prepare
    @property
    def real_train(self) -> Path:
        return self.data / "train.jsonl"

    @property
    def real_test(self) -> Path:
        return self.data / "test.jsonl"

    @property
    def tokenizer(self) -> Path:
        return self.data / "tokenizer.json"

    @property
    def base(self) -> Path:
        """A pretrained model.source as a safetensors folder: where generation 0 (and train.init: base) start."""
        return self.data / "base"

    @property
    def base_source(self) -> Path:
        """Where data/base came from: model.source, its kind, the file's md5, the tokenizer's md5."""
        return self.data / "source.json"

    @property
    def prepare_stats(self) -> Path:
        return self.data / "stats.json"

    # per generation
    def gen(self, k: int | str) -> Path:
        return self.gens / str(k)

    def synthetic(self, k: int | str) -> Path:
        return self.gen(k) / "synthetic.jsonl"

    def graded(self, k: int | str) -> Path:
        return self.gen(k) / "graded.jsonl"

    def generate_stats(self, k: int | str) -> Path:
        """Generation k's tokens spent, their cost, whether the budget stopped it (generate)."""
        return self.gen(k) / "generate.json"

    def grade_stats(self, k: int | str) -> Path:
        return self.gen(k) / "grade.json"

    def sample_shards(self, k: int | str) -> Path:
        """Resumable shards of generation k's sampled token ids (generate), one per batch."""
        return self.gen(k) / "sampling"

    def judge_shards(self, k: int | str) -> Path:
        """Resumable shards of the LLM judge's verdicts (grade), one sub-folder per part."""
        return self.gen(k) / "judge"

    @property
    def verifier(self) -> Path:
        """The real-vs-synthetic verifier (grade), trained once per loop on generation-0 samples."""
        return self.gen(0) / "verifier.json"

    @property
    def verifier_model(self) -> Path:
        """The verifier on the generation-0 model's loss statistics (grade.verifier_features: model)."""
        return self.gen(0) / "verifier_model.json"

    def train_set(self, k: int | str) -> Path:
        return self.gen(k) / "train_set.jsonl"

    def pool(self, k: int | str) -> Path:
        """All kept synthetic documents of generations 1..k (accumulate strategies)."""
        return self.gen(k) / "pool.jsonl"

    def mix_stats(self, k: int | str) -> Path:
        return self.gen(k) / "mix.json"

    def timing(self, k: int | str) -> Path:
        """Seconds each of generation k's stages took (wall and CPU, this process and its children):
        what a run cost, not what it computed, so no DVC output and no summary.csv column."""
        return self.gen(k) / ".timing.json"

    def train_stats(self, k: int | str) -> Path:
        return self.gen(k) / "train.json"

    def train_checkpoint(self, k: int | str) -> Path:
        """The train stage's resumable checkpoint (deleted once the model is saved)."""
        return self.gen(k) / "train_checkpoint.pt"

    def model(self, k: int | str) -> Path:
        return self.gen(k) / "model"

    def metrics(self, k: int | str) -> Path:
        return self.gen(k) / "metrics.json"

    def ref_hist(self, k: int | str) -> Path:
        """Histogram of the samples' perplexity under the frozen generation-0 model."""
        return self.gen(k) / "ref_ppl_hist.json"

    def samples(self, k: int | str) -> Path:
        return self.gen(k) / "samples.jsonl"

    # report
    @property
    def summary(self) -> Path:
        return self.reports / "summary.csv"

    @property
    def plot(self) -> Path:
        return self.reports / "collapse.png"

    @property
    def ref_hist_plot(self) -> Path:
        return self.reports / "ref_ppl_hist.png"

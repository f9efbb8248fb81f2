"""Preflight: everything that can be checked without compute, before Prefect starts or any stage runs.

`synthloop run`, `synthloop sweep` and a UI loop run call `check` first: the corpora (exist,
readable, UTF-8, not empty, enough documents for the split), a pretrained model.source (its
config read, never its weights: the file or folder is there and readable, the context fits the
lengths asked for, the LoRA targets exist), the template prompt's files, the data's writer (a
teacher's config, a generation server that answers and serves generate.model, CUDA for vLLM),
the judge's model folder or endpoint, that the output folders can be written, and free disk for the planned outputs.
A failure is one ConfigError/DataError line naming the key or file and what to do; nothing
is written.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from .config import Params
from .data import documents, split_sizes
from .io import DataError, require_model_folder

log = logging.getLogger("synthloop")

MB = 1 << 20


def check(params: Params, root: Path) -> None:
    corpora(params, root)
    outputs_writable(params, root)
    prompt_files(params, root)
    n_params = pretrained(params, root)
    writer(params, root)
    judge(params, root)
    disk(params, root, n_params)


def check_all(runs: list[Params], root: Path) -> None:
    """`check` for many loops (a sweep): once per prepared data folder, which they share."""
    for params in {p.paths.data: p for p in runs}.values():
        check(params, root)


def corpora(params: Params, root: Path) -> None:
    d = params.data
    train = documents(root, d.corpus, "data.corpus", d.min_chars)
    if d.test_corpus:
        documents(root, d.test_corpus, "data.test_corpus", d.min_chars)
        return
    try:
        split_sizes(len(train), d.test_fraction)
    except DataError as exc:
        raise DataError(f"{(root / d.corpus).resolve()}: {exc}") from None


def prompt_files(params: Params, root: Path) -> None:
    if params.generate.prompt == "template":
        from .prompts import read

        read(root, params.generate)


def pretrained(params: Params, root: Path) -> int | None:
    """Check model.source without loading its weights; its parameter count (None for scratch)."""
    if not params.pretrained:
        return None
    from .models import source

    src = source.resolve(params.model.source, root)
    cfg = source.config(src)
    model = source.skeleton(cfg)
    if params.train.method == "lora":
        from .models.lora import check_targets, module_names

        check_targets(params.train.lora_targets, module_names(model))
    context = source.context_of(cfg)
    if params.train.block_size > context:
        raise DataError(f"train.block_size ({params.train.block_size}) exceeds {src.describe()}'s context ({context})")
    samples_fit(params, context, src.describe())
    return sum(p.numel() for p in model.parameters())


def samples_fit(params: Params, context: int, who: str) -> None:
    """A prompt plus generate.max_new_tokens fits the writing model's context (template prompts:
    their length is the chat template's, checked when they are built)."""
    g = params.generate
    prompt = 1 + (g.prompt_tokens if g.prompt == "prefix" else 0)
    if g.prompt != "template" and prompt + g.max_new_tokens > context:
        raise DataError(
            f"generate.max_new_tokens ({g.max_new_tokens}) plus the prompt ({prompt}) exceeds {who}'s context "
            f"({context}); lower it"
        )


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def outputs_writable(params: Params, root: Path) -> None:
    for key in ("data", "gens", "reports"):
        folder = root / getattr(params.paths, key)
        base = _existing(folder)
        if not base.is_dir() or not os.access(base, os.W_OK | os.X_OK):
            raise DataError(f"{folder}: cannot be written (paths.{key}); make the project folder writable")


def writer(params: Params, root: Path) -> None:
    """Who writes the data: the teacher's config read, the server answering with the model, CUDA for vLLM."""
    g = params.generate
    if g.backend == "vllm":
        from .backends.vllm import check as vllm_ok

        vllm_ok()
    if g.backend == "http":
        from .backends import remote

        remote.check(g, remote.client_of(g))  # client_of: the API key's variable is set
    elif g.source == "teacher":
        from .models import source

        src = source.resolve(g.teacher, root, "generate.teacher")
        samples_fit(params, source.context_of(source.config(src)), src.describe())


def judge(params: Params, root: Path) -> None:
    g = params.grade
    if "judge" not in g.steps:
        return
    if g.judge_backend == "local":
        if g.judge_model_dir == "gen0":
            return  # this loop trains it
        require_model_folder((root / g.judge_model_dir).resolve(), "grade.judge_model_dir")
        return
    from .backends.http import api_key, reachable

    api_key(g.judge_api_key_env, "grade.judge_api_key_env")
    why = reachable(g.judge_base_url, timeout_s=min(g.judge_timeout_s, 10.0))
    if why:
        raise DataError(
            f"grade.judge_base_url = {g.judge_base_url} does not answer ({why}); start the server or fix the URL"
        )


def planned_bytes(params: Params, root: Path, n_params: int | None = None) -> int:
    """A generous estimate of what a loop writes: models (twice: the folder and DVC's cache), the
    text of samples, graded rows and training sets, the prepared data, per generation (a pretrained
    source: `n_params`, and one more model, data/base)."""
    m, g = params.model, params.loop.generations + 1 + (n_params is not None)
    if n_params is None:
        n_params = params.tokenizer.vocab_size * m.n_embd + m.context * m.n_embd + 12 * m.n_layer * m.n_embd**2
    text = 8 * params.generate.max_new_tokens * (params.generate.num_samples * 3 + params.mix.train_size)
    corpus = root / params.data.corpus
    data = 3 * corpus.stat().st_size if corpus.is_file() else 0
    return data + g * (2 * 4 * n_params + text)


def disk(params: Params, root: Path, n_params: int | None = None) -> None:
    need = planned_bytes(params, root, n_params)
    free = shutil.disk_usage(_existing(root / params.paths.gens)).free
    if free < need:
        raise DataError(
            f"{root}: {free // MB} MB free, the loop needs about {need // MB} MB; free space "
            "(or lower loop.chain's generations or generate.num_samples) and rerun"
        )

"""Template prompts (generate.prompt: template): an instruction file with {topic}, a topics file.

Pure text, no model: the preflight checks both files with `read`, before anything runs, and the
generate stage builds the instructions with `instructions`, then applies the model's chat template.
"""

from __future__ import annotations

import string
from pathlib import Path
from random import Random

from .config import GenerateParams
from .io import DataError

PLACEHOLDERS = ("topic",)


def _text(root: Path, name: str, key: str) -> str:
    path = root / name
    if not path.is_file():
        raise DataError(f"{key} = {name}: no such file ({path}); create it or fix the path")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{key} = {name}: not UTF-8 (bad byte at offset {exc.start}); re-encode it") from None


def read(root: Path, cfg: GenerateParams) -> tuple[str, list[str]]:
    """(instruction template, topics); one line naming the key when a file is missing or wrong."""
    template = _text(root, cfg.template, "generate.template").strip()
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:  # a lone { or }
        raise DataError(
            f"generate.template = {cfg.template}: {exc}; write {{topic}} for the topic, {{{{ for a brace}}"
        ) from None
    unknown = sorted({f for f in fields if f not in PLACEHOLDERS})
    if unknown:
        raise DataError(
            f"generate.template = {cfg.template}: unknown placeholder {{{unknown[0]}}}; the only one is {{topic}}"
        )
    if not template:
        raise DataError(f"generate.template = {cfg.template}: the file is empty; write the instruction in it")
    topics = [line.strip() for line in _text(root, cfg.topics, "generate.topics").splitlines() if line.strip()]
    if not topics:
        raise DataError(f"generate.topics = {cfg.topics}: no topics; write one per line")
    return template, topics


def instructions(template: str, topics: list[str], n: int, rng: Random) -> list[str]:
    """n instructions, each with a topic drawn (seeded) from `topics`."""
    return [template.format(topic=rng.choice(topics)) for _ in range(n)]

"""Real documents: a corpus read with data.min_chars applied, and the sizes of the held-out split.

Pure reading, no tokenizer or model: the prepare stage and the preflight both use it, so a bad
corpus gives the same one line whether `synthloop run` finds it before anything starts or a
stage finds it under `dvc repro`.
"""

from __future__ import annotations

from pathlib import Path

from . import io
from .io import DataError


def documents(root: Path, value: str, key: str, min_chars: int) -> list[str]:
    """The documents of the corpus at `value` (relative to `root`) with at least min_chars characters."""
    path = (root / value).resolve()
    docs = [d for d in io.read_corpus(path, key) if len(d) >= min_chars]
    if not docs:
        raise DataError(
            f"{path}: no document has data.min_chars = {min_chars} characters; lower it or use a larger corpus"
        )
    return docs


def split_sizes(n_docs: int, test_fraction: float) -> tuple[int, int]:
    """(train, test) document counts of a split of n_docs; one line when either would be empty."""
    n_test = round(n_docs * test_fraction)
    if n_test < 1 or n_docs - n_test < 1:
        raise DataError(
            f"{n_docs} document(s): too few to hold out data.test_fraction = "
            f"{test_fraction} (need >= 1 test and >= 1 train document); add documents or set data.test_corpus"
        )
    return n_docs - n_test, n_test

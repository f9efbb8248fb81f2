"""prepare.split_documents: a seeded, disjoint document split."""

from __future__ import annotations

from random import Random

import pytest

from synthloop.io import DataError
from synthloop.stages.prepare import split_documents

DOCS = [f"document {i}" for i in range(40)]


def test_split_is_deterministic_for_a_seed():
    assert split_documents(DOCS, 0.25, Random(5)) == split_documents(DOCS, 0.25, Random(5))
    assert split_documents(DOCS, 0.25, Random(5)) != split_documents(DOCS, 0.25, Random(6))


@pytest.mark.parametrize("n, fraction", [(40, 0.25), (40, 0.05), (7, 0.5), (2, 0.5), (1000, 0.013)])
def test_split_sizes_and_disjoint(n, fraction):
    docs = [f"d{i}" for i in range(n)]
    train, test = split_documents(docs, fraction, Random(0))
    assert len(test) == round(n * fraction) and len(train) == n - len(test)
    assert set(train).isdisjoint(test) and set(train) | set(test) == set(docs)
    assert train == [d for d in docs if d in set(train)]  # original order kept


@pytest.mark.parametrize("n, fraction", [(1, 0.5), (3, 0.1), (2, 0.9), (0, 0.5)])
def test_too_few_documents(n, fraction):
    with pytest.raises(DataError, match="data.test_fraction"):
        split_documents([f"d{i}" for i in range(n)], fraction, Random(0))

"""Shared fixtures: the project root, the shipped params, and a params-file factory."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from synthloop.config import ConfigError, Params, load_params

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def _raw_default() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))


@pytest.fixture
def raw(_raw_default) -> dict:
    """A fresh, mutable copy of params.yaml as a plain dict."""
    return copy.deepcopy(_raw_default)


@pytest.fixture(scope="session")
def tiny() -> Params:
    return load_params(ROOT / "profiles" / "tiny.yaml")


@pytest.fixture
def config_error(tmp_path):
    """Write `raw` to a params file, load it and return the ConfigError message."""

    def _error(raw_params) -> str:
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump(raw_params, sort_keys=False), encoding="utf-8")
        with pytest.raises(ConfigError) as info:
            load_params(path)
        return str(info.value)

    return _error

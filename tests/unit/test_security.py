"""Security rules that hold for the whole code base: loopback servers, safetensors-only
model loading, no remote code, no pickles, outputs inside the project."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from synthloop.config import ConfigError, parse_params
from synthloop.io import DataError
from synthloop.models import lm
from tests.conftest import REPO, tiny_params

SOURCES = sorted([*(REPO / "synthloop").rglob("*.py"), *(REPO / "flows").rglob("*.py")])


def code_lines() -> list[tuple[Path, int, str]]:
    return [
        (p, n, line)
        for p in SOURCES
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if not line.lstrip().startswith("#")
    ]


def test_no_pickle_loading_and_no_remote_code_anywhere():
    bad = [
        (p.name, n, line.strip())
        for p, n, line in code_lines()
        if re.search(r"trust_remote_code\s*=\s*True|pickle\.load|joblib|torch\.load\((?!.*weights_only=True)", line)
    ]
    assert bad == []


def test_servers_bind_to_loopback_only():
    hosts = [(p.name, n, line.strip()) for p, n, line in code_lines() if re.search(r"0\.0\.0\.0|\"::\"", line)]
    assert hosts == []
    assert "127.0.0.1" in (REPO / "synthloop" / "ui.py").read_text()


def test_a_pickle_only_model_folder_is_refused(tmp_path):
    """A folder with pytorch_model.bin (a pickle) and no safetensors is never unpickled."""
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=300, n_positions=32))
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(DataError, match="model folder is unreadable"):
        lm.load_model(tmp_path, torch.device("cpu"))


@pytest.mark.parametrize(
    "key,value", [("gens", "../outside"), ("data", "/etc"), ("reports", "a/../../b"), ("data", "")]
)
def test_output_paths_cannot_escape_the_project(key, value, tmp_path):
    raw = tiny_params(tmp_path / "t.txt", None)
    raw["paths"][key] = value
    with pytest.raises(ConfigError, match=f"paths.{key}.*inside the project"):
        parse_params(raw)


def test_outside_paths_only_when_explicitly_allowed(tmp_path, monkeypatch):
    raw = tiny_params(tmp_path / "t.txt", None)
    raw["paths"]["gens"] = str(tmp_path / "gens")
    monkeypatch.setenv("SYNTHLOOP_ALLOW_OUTSIDE_PATHS", "1")
    assert parse_params(raw).paths.gens == str(tmp_path / "gens")


def test_params_hold_the_name_of_the_api_key_variable_never_a_key():
    from synthloop.config import GradeParams

    fields = GradeParams.model_fields
    assert "judge_api_key_env" in fields and not [f for f in fields if f.endswith(("api_key", "token", "secret"))]

"""The synthloop command as a subprocess: help, and one-line errors without tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import REPO, small_corpus, tiny_params, write_params

EXE = [sys.executable, "-m", "synthloop"]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([*EXE, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


def test_help_lists_commands(tmp_path):
    out = cli("--help", cwd=tmp_path)
    assert out.returncode == 0
    for command in ("run", "stage", "show"):
        assert command in out.stdout
    assert "--gen" in cli("stage", "--help", cwd=tmp_path).stdout


def _one_line_error(out: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    assert out.returncode == code, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr
    for needle in needles:
        assert needle in lines[0]


def test_bad_strategy_names_key_and_choices(tmp_path):
    raw = tiny_params(Path("c.txt"), None, mix={"strategy": "recycle"})
    write_params(tmp_path, raw)
    _one_line_error(cli("run", cwd=tmp_path), 2, "mix.strategy", "'replace'", "'fixed_fraction'")


def test_unknown_key_suggests_the_right_one(tmp_path):
    raw = tiny_params(Path("c.txt"), None)
    raw["mix"]["real_fracton"] = raw["mix"].pop("real_fraction")
    write_params(tmp_path, raw)
    _one_line_error(cli("stage", "prepare", cwd=tmp_path), 2, "mix.real_fracton", "mix.real_fraction")


def test_missing_corpus_says_how_to_point_elsewhere(tmp_path):
    write_params(tmp_path, tiny_params(tmp_path / "nope.txt", None))
    _one_line_error(cli("stage", "prepare", cwd=tmp_path), 1, "nope.txt", "data.corpus")
    assert not (tmp_path / "data").exists()


def test_non_utf8_corpus(tmp_path):
    (tmp_path / "c.txt").write_bytes(b"caf\xe9 au lait " * 20)
    write_params(tmp_path, tiny_params(tmp_path / "c.txt", None))
    _one_line_error(cli("stage", "prepare", cwd=tmp_path), 1, "not UTF-8")


def test_corpus_too_small_for_split(tmp_path):
    (tmp_path / "c.txt").write_text("one lonely document that is long enough to keep around\n")
    write_params(tmp_path, tiny_params(tmp_path / "c.txt", None))
    _one_line_error(cli("stage", "prepare", cwd=tmp_path), 1, "too few", "data.test_fraction")


def test_stage_needs_a_valid_generation(tmp_path):
    write_params(tmp_path, tiny_params(Path("c.txt"), None))
    _one_line_error(cli("stage", "generate", "--gen", "7", cwd=tmp_path), 2, "--gen", "between 1 and 2")


def test_params_not_yaml(tmp_path):
    (tmp_path / "params.yaml").write_text("paths: [unclosed\n")
    _one_line_error(cli("run", cwd=tmp_path), 2, "params.yaml", "not valid YAML")


def test_prepare_then_show_without_summary(tmp_path):
    train, test = small_corpus(tmp_path / "corpus", n_train=40, n_test=5)
    write_params(tmp_path, tiny_params(train, test, tracking={"uri": f"sqlite:///{tmp_path / 'm.db'}"}))
    out = cli("stage", "prepare", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    stats = yaml.safe_load((tmp_path / "data" / "stats.json").read_text())
    assert stats["n_train_docs"] == 40 and stats["n_test_docs"] == 5
    _one_line_error(cli("show", cwd=tmp_path), 1, "no summary yet")

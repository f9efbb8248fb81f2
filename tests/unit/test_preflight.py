"""Preflight checks that need no compute: corpora, output folders, the judge, free disk."""

from __future__ import annotations

import shutil
import socket
from collections import namedtuple

import pytest

from synthloop import preflight
from synthloop.config import parse_params
from synthloop.io import DataError
from tests.conftest import small_corpus, tiny_params


@pytest.fixture
def project(tmp_path):
    train, test = small_corpus(tmp_path / "corpus", n_train=40, n_test=5)
    return tmp_path, train, test


def test_a_good_project_passes(project):
    root, train, test = project
    preflight.check(parse_params(tiny_params(train, test)), root)


def test_a_closed_judge_endpoint_is_one_line(project):
    root, train, test = project
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends
    grade = {
        "steps": ["judge"],
        "judge_backend": "http",
        "judge_mode": "generate",
        "judge_base_url": f"http://127.0.0.1:{port}",
        "judge_model": "m",
    }
    params = parse_params(tiny_params(train, test, grade=grade))
    with pytest.raises(
        DataError, match=rf"grade.judge_base_url = http://127.0.0.1:{port} does not answer \(connection refused\)"
    ):
        preflight.check(params, root)


def test_a_missing_local_judge_folder_is_one_line(project):
    root, train, test = project
    params = parse_params(tiny_params(train, test, grade={"steps": ["judge"], "judge_model_dir": "judges/none"}))
    with pytest.raises(DataError, match="grade.judge_model_dir = .*judges/none: no model here"):
        preflight.check(params, root)


def test_too_little_disk_is_one_line(project, monkeypatch):
    root, train, test = project
    params = parse_params(tiny_params(train, test))
    need = preflight.planned_bytes(params, root)
    assert need > 2 * 4 * 3 * 32 * 512  # at least the three models' weights, twice
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 * need, 9 * need, need // 2))
    with pytest.raises(DataError, match=r"MB free, the loop needs about \d+ MB"):
        preflight.check(params, root)


def test_an_output_folder_that_cannot_be_made_is_one_line(project):
    root, train, test = project
    (root / "afile").write_text("not a folder")
    params = parse_params(tiny_params(train, test, paths={"gens": "afile/gens"}))
    with pytest.raises(DataError, match=r"afile/gens: cannot be written \(paths.gens\)"):
        preflight.check(params, root)

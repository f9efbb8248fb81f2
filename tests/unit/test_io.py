"""synthloop.io: atomic writes, JSONL rows, hashes and corpus reading."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from synthloop import io
from synthloop.io import DataError


def test_rows_round_trip_unicode(tmp_path):
    rows = [
        {"id": "real:0", "text": 'héllo — 世界 🙂\n"q"\ttab', "scores": {"x": 1.5}},
        {"id": "g1:0", "text": "line\u2028sep\x85nel\rcr", "parent": None},
    ]
    path = tmp_path / "rows.jsonl"
    assert io.write_rows(path, rows) == 2
    assert io.read_rows(path) == rows
    assert "世界".encode() in path.read_bytes()  # written as UTF-8, not \u escapes


def test_atomic_path_failure_keeps_target_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("new")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.json"]


def test_atomic_path_success_replaces_and_is_readable(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    io.write_text(target, "one")
    io.write_text(target, "two")
    assert target.read_text() == "two"
    assert os.listdir(target.parent) == ["out.txt"]
    assert target.stat().st_mode & 0o777 == 0o644


def test_atomic_directory_failure_and_success(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.bin").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with io.atomic_path(target, directory=True) as tmp:
            (tmp / "new.bin").write_text("new")
            raise KeyboardInterrupt
    assert sorted(os.listdir(tmp_path)) == ["model"] and os.listdir(target) == ["old.bin"]
    with io.atomic_path(target, directory=True) as tmp:
        (tmp / "new.bin").write_text("new")
    assert sorted(os.listdir(tmp_path)) == ["model"] and os.listdir(target) == ["new.bin"]


def test_write_rows_failing_generator_writes_nothing(tmp_path):
    def rows():
        yield {"text": "a"}
        raise ValueError("boom")

    with pytest.raises(ValueError):
        io.write_rows(tmp_path / "rows.jsonl", rows())
    assert os.listdir(tmp_path) == []


def test_write_json_is_deterministic(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    io.write_json(a, {"z": 1, "a": [1, 2], "m": {"y": 0.5, "b": None}})
    io.write_json(b, {"m": {"b": None, "y": 0.5}, "a": [1, 2], "z": 1})
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes().endswith(b"}\n")
    assert io.read_json(a) == {"z": 1, "a": [1, 2], "m": {"y": 0.5, "b": None}}


def test_md5_file_matches_hashlib(tmp_path):
    data = os.urandom(3 * (1 << 20) + 17)  # spans several 1 MiB blocks
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert io.md5_file(path) == hashlib.md5(data).hexdigest()


def test_txt_corpus_splits_on_blank_lines(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("\n\nfirst doc\nsecond line  \n\n \n\nsecond doc\n\n\nthird\n")
    assert io.read_corpus(path, "data.corpus") == ["first doc\nsecond line", "second doc", "third"]


def test_folder_corpus_reads_txt_files_sorted(tmp_path):
    (tmp_path / "b.txt").write_text("b1\n\nb2")
    (tmp_path / "a.txt").write_text("a1")
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "c.txt").write_text("c1")
    (tmp_path / "ignored.md").write_text("not read")
    assert io.read_corpus(tmp_path, "data.corpus") == ["a1", "b1", "b2", "c1"]


def test_jsonl_corpus_reads_text_field(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "one\\n\\ntwo", "id": 1}\n\n{"text": "три"}\n', encoding="utf-8")
    assert io.read_corpus(path, "data.corpus") == ["one\n\ntwo", "три"]


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("empty.txt", b"", "corpus is empty"),
        ("blank.txt", b"\n  \n\n", "corpus is empty"),
        ("binary.txt", b"abc\x00\x01\x02", "looks binary"),
        ("latin1.txt", "café".encode("latin-1"), "not UTF-8"),
        ("notext.jsonl", b'{"text": "ok"}\n{"body": "x"}\n', r"notext.jsonl:2: no string 'text' field"),
        ("number.jsonl", b'{"text": 5}\n', "no string 'text' field"),
        ("broken.jsonl", b'{"text": "a"\n', "not valid JSON"),
    ],
)
def test_bad_corpus_files(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=match) as info:
        io.read_corpus(path, "data.corpus")
    assert "\n" not in str(info.value)


def test_missing_corpus_names_the_key(tmp_path):
    with pytest.raises(DataError, match="data.test_corpus"):
        io.read_corpus(tmp_path / "missing.txt", "data.test_corpus")


def test_folder_without_txt_names_the_key(tmp_path):
    (tmp_path / "c.jsonl").write_text('{"text": "a"}\n')
    with pytest.raises(DataError, match="no .txt files.*data.corpus"):
        io.read_corpus(tmp_path, "data.corpus")


def test_jsonl_corpus_with_unicode_line_separator_in_text(tmp_path):
    path = tmp_path / "c.jsonl"
    texts = ["para one\u2028still one", "next\x85line"]
    io.write_rows(path, ({"text": t} for t in texts))
    first = path.read_text(encoding="utf-8").split("\n")[0]
    assert json.loads(first)["text"] == texts[0]  # the file is valid JSONL
    assert io.read_corpus(path, "data.corpus") == texts

"""The only file-format code: atomic writes, JSONL rows, corpora, hashes.

Every output goes to a temporary file in the same folder and is renamed into
place, so a killed run never leaves a truncated file that a later stage trusts.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io as stdio
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


class DataError(ValueError):
    """A user error in input data: one line naming the file and what to do."""


@contextlib.contextmanager
def atomic_path(path: Path, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; on success rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        tmp.chmod(0o755 if directory else 0o644)  # mkstemp/mkdtemp create private (0600/0700) entries
        if directory and path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:  # a failed write names no file: name ours
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def stale_temps(folder: Path) -> list[Path]:
    """Temporary siblings (`.NAME.XXXX.tmp`) that atomic_path leaves only when its process was killed."""
    return sorted(folder.glob(".*.tmp")) if folder.is_dir() else []


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str] | None = None) -> None:
    """Rows as CSV with a header; columns default to every key in order of appearance (missing: empty)."""
    columns = columns or list(dict.fromkeys(k for row in rows for k in row))
    buf = stdio.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_rows(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    n = 0
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
            n += 1
    return n


def read_rows(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def md5_file(path: Path) -> str:
    """The hash DVC 3 records for a file (plain md5 of its bytes)."""
    h = hashlib.md5()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_md5(folder: Path) -> str:
    """One hash of a model folder's safetensors weights (every shard, in name order): what
    keys resumable work done with that model, so a retrained model is never mistaken for it."""
    return ",".join(md5_file(w) for w in sorted(folder.glob("*.safetensors")))


def require_model_folder(folder: Path, key: str) -> None:
    """A transformers model folder with safetensors weights (never pickled ones), or one line naming `key`."""
    if not (folder / "config.json").is_file():
        raise DataError(
            f"{key} = {folder}: no model here (config.json missing); point it at a folder with a transformers causal LM"
        )
    if not any(folder.glob("*.safetensors")):
        raise DataError(
            f"{key} = {folder}: no .safetensors weights; "
            "only safetensors are loaded (pickled .bin weights can run code)"
        )


def _decode(path: Path) -> str:
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        raise DataError(f"{path}: looks binary (NUL bytes); data.corpus must be UTF-8 text")
    try:
        return data.decode("utf-8-sig")  # a leading BOM is not text
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 (bad byte at offset {exc.start}); re-encode it as UTF-8") from None


def _split_blank_lines(text: str) -> list[str]:
    docs, current = [], []
    for line in text.split("\n"):
        if line.strip():
            current.append(line.rstrip())
        elif current:
            docs.append("\n".join(current))
            current = []
    if current:
        docs.append("\n".join(current))
    return docs


def _jsonl_texts(path: Path) -> list[str]:
    docs = []
    for n, line in enumerate(_decode(path).split("\n"), 1):  # not splitlines: U+2028 may sit inside JSON strings
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise DataError(f"{path}:{n}: not valid JSON; each line must be an object with a 'text' field") from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise DataError(f"{path}:{n}: no string 'text' field; each line must be an object with a 'text' field")
        docs.append(row["text"])
    return docs


def read_corpus(path: Path, key: str) -> list[str]:
    """Documents of a corpus: .txt (blank-line separated), a folder of .txt, or .jsonl ('text')."""
    if not path.exists():
        raise DataError(
            f"{path}: corpus not found; set {key} in params.yaml to a .txt file, "
            "a folder of .txt files or a .jsonl file"
        )
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise DataError(f"{path}: folder has no .txt files; point {key} at text files")
        docs = [d for f in files for d in _split_blank_lines(_decode(f))]
    elif path.suffix == ".jsonl":
        docs = _jsonl_texts(path)
    else:
        docs = _split_blank_lines(_decode(path))
    if not docs:
        raise DataError(f"{path}: corpus is empty; {key} needs documents separated by blank lines")
    return docs

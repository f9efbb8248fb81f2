"""Row-level resume for slow graders: results are written shard by shard as they finish.

An LLM judge over HTTP can take an hour for a generation; a crash, a timeout or a
Ctrl-C near the end must not throw that away. `score_in_shards` writes each shard of
results atomically to `folder/shard-NNNNN.jsonl` and, when run again on the same
inputs and settings, reads the finished shards instead of recomputing them.
`folder/key.json` holds a hash of the inputs, the shard size and the caller's settings
string: when any of them changes, the old shards are deleted, never reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..io import read_json, read_rows, write_json, write_rows

log = logging.getLogger("synthloop")

KEY_FILE = "key.json"


def shard_path(folder: Path, i: int) -> Path:
    return folder / f"shard-{i:05d}.jsonl"


def inputs_key(items: list[str], shard_size: int, settings: str) -> str:
    """Hash of everything that decides the results: the items, the shard size, the settings."""
    h = hashlib.sha256()
    h.update(json.dumps([settings, shard_size, len(items)]).encode())
    for item in items:
        h.update(b"\0" + item.encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def _prepare(folder: Path, key: str, n_items: int, shard_size: int) -> None:
    """Keep the shards written for this key; delete those of any other key (or of none)."""
    key_file = folder / KEY_FILE
    try:
        same = key_file.is_file() and read_json(key_file).get("key") == key
    except (ValueError, OSError, AttributeError):  # an unreadable key file trusts nothing
        same = False
    if same:
        return
    stale = sorted(folder.glob("shard-*.jsonl"))
    for path in stale:
        path.unlink()
    if stale:
        log.info("%s: inputs or settings changed; deleted %d stale shards in %s", folder, len(stale), folder)
    write_json(key_file, {"key": key, "n_items": n_items, "shard_size": shard_size})


def score_in_shards(items: list[str], fn: Callable[[list[str]], list[dict[str, Any]]], folder: Path,
                    shard_size: int, desc: str, settings: str = "") -> list[dict[str, Any]]:
    """fn(items) as rows, in order, computed `shard_size` items at a time and resumable.

    `fn` gets one shard of items and returns one JSON-serialisable dict per item.
    Finished shards are read back, not recomputed; fresh ones are also returned as read
    back from their file, so a resumed run returns exactly what an uninterrupted one does.
    `settings` names whatever else decides the results (the judge's backend, model,
    mode, rubric version): a change discards the cached shards.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    folder.mkdir(parents=True, exist_ok=True)
    _prepare(folder, inputs_key(items, shard_size, settings), len(items), shard_size)
    starts = range(0, len(items), shard_size)
    done = [i for i, _ in enumerate(starts) if shard_path(folder, i).is_file()]
    if done:
        log.info("%s: resumed %d of %d shards from %s", desc, len(done), len(starts), folder)
    rows: list[dict[str, Any]] = []
    with tqdm(total=len(items), desc=desc, unit="doc", leave=False, disable=None) as bar:
        for i, start in enumerate(starts):
            chunk = items[start:start + shard_size]
            path = shard_path(folder, i)
            if not path.is_file():
                out = fn(chunk)
                if len(out) != len(chunk):
                    raise ValueError(f"{desc}: grader returned {len(out)} rows for {len(chunk)} items")
                write_rows(path, out)
            shard = read_rows(path)
            if len(shard) != len(chunk):  # written by atomic rename, so only a hand-edited file gets here
                raise ValueError(f"{path}: {len(shard)} rows for {len(chunk)} items; delete {folder} and rerun")
            rows.extend(shard)
            bar.update(len(chunk))
    return rows

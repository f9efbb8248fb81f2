"""Row-level resume for slow work: results are written shard by shard as they finish.

An LLM judge over HTTP can take an hour for a generation, and sampling a large
generation many minutes; a crash, a timeout or a Ctrl-C near the end must not throw
that away. `run_in_shards` writes each shard of results atomically to
`folder/shard-NNNNN.jsonl` and, when run again with the same key, reads the finished
shards instead of recomputing them. `folder/key.json` holds the caller's key (a hash
of everything that decides the results): when it changes, the old shards are
deleted, never reused. `score_in_shards` is the common case of a list of texts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .io import read_json, read_rows, write_json, write_rows
from .keys import content_key
from .progress import Progress

log = logging.getLogger("synthloop")

KEY_FILE = "key.json"


def shard_path(folder: Path, i: int) -> Path:
    return folder / f"shard-{i:05d}.jsonl"


def _prepare(folder: Path, key: str, sizes: list[int]) -> None:
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
        log.info("%s: inputs or settings changed; deleted %d stale shards", folder, len(stale))
    write_json(key_file, {"key": key, "n_items": sum(sizes), "n_shards": len(sizes)})


def run_in_shards(
    folder: Path,
    key: str,
    sizes: list[int],
    fn: Callable[[int], list[dict[str, Any]]],
    desc: str,
    unit: str = "doc",
    after_shard: Callable[[int], None] | None = None,
    final: Callable[[dict[str, Any]], bool] | None = None,
    stop: Callable[[list[list[dict[str, Any]]]], bool] | None = None,
    elsewhere: Callable[[list[int]], None] | None = None,
) -> list[list[dict[str, Any]]]:
    """[fn(0), fn(1), ...], each shard computed once and resumable; shard i has sizes[i] rows.

    `key` must change whenever anything that decides the results changes. Finished
    shards are read back, not recomputed; fresh ones are also returned as read back
    from their file, so a resumed run returns exactly what an uninterrupted one does.
    `after_shard(i)` runs once shard i is safely on disk (a kill point for the tests).
    `final(row)` False (e.g. a request that failed) keeps the shard off the disk: it is
    returned for this run and computed again by the next one, never cached as a result.
    `stop(shards so far)` True after a shard (a spent budget) ends the run there: fewer shards
    come back, the same ones on a resumed run.
    `elsewhere(missing shard indices)`, when given (and no `stop`), computes those shards at once on
    other processes (a cluster's workers), which write each one's file as fn would; they are then
    read back here like any finished shard.
    """
    folder.mkdir(parents=True, exist_ok=True)
    _prepare(folder, key, sizes)
    done = [i for i in range(len(sizes)) if shard_path(folder, i).is_file()]
    if done:
        log.info("%s: resumed %d of %d shards from %s", desc, len(done), len(sizes), folder)
    missing = [i for i in range(len(sizes)) if i not in set(done)]
    if elsewhere and not stop and len(missing) > 1:
        log.info("%s: %d shards to the cluster's workers", desc, len(missing))
        elsewhere(missing)
    shards: list[list[dict[str, Any]]] = []
    with Progress(sum(sizes), desc, unit=unit) as bar:
        for i, size in enumerate(sizes):
            path = shard_path(folder, i)
            if not path.is_file():
                out = fn(i)
                if len(out) != size:
                    raise ValueError(f"{desc}: shard {i} has {len(out)} rows for {size} items")
                failed = sum(not final(row) for row in out) if final else 0
                if failed:
                    log.info("%s: shard %d has %d failed rows; not stored, the next run asks again", desc, i, failed)
                    shards.append(json.loads(json.dumps(out)))  # as a file would give them back
                    bar.update(size)
                    continue
                write_rows(path, out)
                if after_shard:
                    after_shard(i)
            shard = read_rows(path)
            if len(shard) != size:  # written by atomic rename, so only a hand-edited file gets here
                raise ValueError(f"{path}: {len(shard)} rows for {size} items; delete {folder} and rerun")
            shards.append(shard)
            bar.update(size)
            if stop and stop(shards):
                log.info("%s: stopped after shard %d of %d (budget reached)", desc, i + 1, len(sizes))
                break
    return shards


def score_in_shards(
    items: list[str],
    fn: Callable[[list[str]], list[dict[str, Any]]],
    folder: Path,
    shard_size: int,
    desc: str,
    settings: str = "",
    final: Callable[[dict[str, Any]], bool] | None = None,
    elsewhere: Callable[[list[tuple[list[str], str]]], None] | None = None,
) -> list[dict[str, Any]]:
    """fn(items) as rows, in order, computed `shard_size` items at a time and resumable.

    `fn` gets one shard of items and returns one JSON-serialisable dict per item.
    `settings` names whatever else decides the results (the judge's backend, model,
    mode, rubric version): a change discards the cached shards. `final`: see run_in_shards.
    `elsewhere([(items of a missing shard, its file), ...])`: computes them on a cluster's workers,
    each writing its shard file (only when every row is final); the rest are computed here.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    starts = list(range(0, len(items), shard_size))
    chunks = [items[s : s + shard_size] for s in starts]
    shards = run_in_shards(
        folder,
        content_key(items, shard_size, settings),
        [len(c) for c in chunks],
        lambda i: fn(chunks[i]),
        desc,
        final=final,
        elsewhere=(lambda missing: elsewhere([(chunks[i], str(shard_path(folder, i))) for i in missing]))
        if elsewhere
        else None,
    )
    return [row for shard in shards for row in shard]

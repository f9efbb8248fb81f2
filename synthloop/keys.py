"""Stable derived numbers: seeds, params hashes and cache keys (each defined once).

- `derive_seed`: one seed per use (purpose, generation, batch) of the loop seed.
- `params_hash`: the params (or some sections) as a short hash: the ledger key, the
  MLflow loop id of a DVC-run stage, the sweep's sharing keys.
- `content_key`: the hash of everything that decides a cached result (resumable
  shards, the trained verifier): a change of any part discards the cache.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .config import Params, flatten


def derive_seed(seed: int, *parts: object, bits: int = 31) -> int:
    """A stable `bits`-bit seed for one use of the loop seed: sha256 of 'seed:part:part...'."""
    digest = hashlib.sha256(":".join(map(str, (seed, *parts))).encode()).digest()
    return int.from_bytes(digest[: -(-bits // 8)], "big") & ((1 << bits) - 1)


def params_hash(params: Params, sections: tuple[str, ...] | None = None, drop: tuple[str, ...] = ()) -> str:
    """sha256 (16 hex digits) of the flat params (or some sections), minus the dotted keys or prefixes in `drop`."""
    flat = {
        k: v
        for k, v in flatten(params).items()
        if (sections is None or k.split(".")[0] in sections) and not k.startswith(drop)
    }
    return hashlib.sha256(json.dumps(flat, sort_keys=True, default=str).encode()).hexdigest()[:16]


def content_key(*parts: Any) -> str:
    """sha256 of JSON-serialisable parts: what keys a cache of results computed from them."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()

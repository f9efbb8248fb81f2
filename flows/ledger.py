"""Resume for runs DVC does not record (profiles, sweep runs): a ledger of finished stages.

A stage is written to the ledger only after it returned, and the ledger is keyed
by a hash of the params: changed params start over. Once any stage runs again,
every later stage runs too (its inputs may have changed), so a killed loop
resumes at the stage it was in and nothing after it is trusted blindly.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from . import io
from .config import Params, flatten

log = logging.getLogger("synthloop")


def params_key(params: Params, sections: tuple[str, ...] | None = None, drop: tuple[str, ...] = ()) -> str:
    """A short hash of the params (or some sections), minus the dotted keys or prefixes in `drop`."""
    flat = {k: v for k, v in flatten(params).items()
            if (sections is None or k.split(".")[0] in sections) and not k.startswith(drop)}
    return hashlib.sha256(json.dumps(flat, sort_keys=True, default=str).encode()).hexdigest()[:16]


def label(name: str, gen: int | None) -> str:
    return name if gen is None else f"{name}@{gen}"


class Ledger:
    def __init__(self, path: Path, key: str):
        self.path, self.key, self.dirty = path, key, False
        state = io.read_json(path) if path.is_file() else {}
        self.finished: list[str] = state.get("finished", []) if state.get("key") == key else []
        if state and state.get("key") != key:
            log.info("ledger %s: params changed since the last run; starting this run over", path)

    def done(self, name: str, gen: int | None) -> bool:
        return not self.dirty and label(name, gen) in self.finished

    def record(self, name: str, gen: int | None) -> None:
        self.dirty = True
        if label(name, gen) not in self.finished:
            self.finished.append(label(name, gen))
        io.write_json(self.path, {"key": self.key, "finished": self.finished})

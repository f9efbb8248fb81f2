"""Resume for runs DVC does not record (profiles, sweep runs): a ledger of finished stages.

A stage is written to the ledger only after it returned, and the ledger is keyed
by a hash of the params: changed params start over. Once any stage runs again,
every later stage runs too (its inputs may have changed), so a killed loop
resumes at the stage it was in and nothing after it is trusted blindly.
"""

from __future__ import annotations

import logging
from pathlib import Path

from . import io
from .config import Params
from .keys import params_hash
from .layout import Layout
from .stages.table import stage_id

log = logging.getLogger("synthloop")


class Ledger:
    def __init__(self, path: Path, key: str):
        self.path, self.key, self.dirty = path, key, False
        state = io.read_json(path) if path.is_file() else {}
        self.finished: list[str] = state.get("finished", []) if state.get("key") == key else []
        if state and state.get("key") != key:
            log.info("ledger %s: params changed since the last run; starting this run over", path)

    @classmethod
    def of(cls, params: Params, root: Path) -> Ledger:
        """The ledger of a loop: in its gens folder, keyed by its params."""
        return cls(Layout.of(params, root).gens / ".ledger.json", params_hash(params))

    def done(self, name: str, gen: int | None) -> bool:
        return not self.dirty and stage_id(name, gen) in self.finished

    def record(self, name: str, gen: int | None) -> None:
        self.dirty = True
        if stage_id(name, gen) not in self.finished:
            self.finished.append(stage_id(name, gen))
        io.write_json(self.path, {"key": self.key, "finished": self.finished})

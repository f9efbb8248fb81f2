"""Progress of long work: a bar in a terminal, a plain line every ~10 s elsewhere, and an optional sink.

In a terminal, tqdm draws the bar. When stderr is not a terminal (CI, `dvc repro`'s log, a
Prefect worker), a bar would be noise, so one log line goes out every `EVERY_S` seconds
instead: done/total, rate and ETA, plus whatever the caller reports (e.g. the loss). A
caller-installed sink (`reporting(...)`; the Prefect layer uses it for the flow run's
progress artifact) receives every update as (description, fraction done); stages never
import the layer that installs it.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar

from tqdm.auto import tqdm

log = logging.getLogger("synthloop")

EVERY_S = 10.0
Sink = Callable[[str, float], None]
_sink: ContextVar[Sink | None] = ContextVar("synthloop_progress_sink", default=None)


@contextlib.contextmanager
def reporting(sink: Sink) -> Iterator[None]:
    """Send every progress update inside this block to `sink(description, fraction)`."""
    token = _sink.set(sink)
    try:
        yield
    finally:
        _sink.reset(token)


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m{s:02d}s"


class Progress:
    """`total` units of work called `desc`; update(n, **info) as they finish; use as a context manager."""

    def __init__(
        self, total: int, desc: str, unit: str = "it", initial: int = 0, every_s: float = EVERY_S, quiet: bool = False
    ):
        """quiet: count, but show nothing (a data-parallel rank other than 0)."""
        self.total, self.desc, self.unit, self.done, self.every_s = total, desc, unit, initial, every_s
        self.tty = sys.stderr.isatty() and not quiet
        self.bar = tqdm(total=total, desc=desc, unit=unit, initial=initial, leave=False, disable=not self.tty)
        self.every_s = float("inf") if quiet else every_s
        self.start = self.last = time.monotonic()
        self.first, self.info = initial, ""

    def update(self, n: int = 1, **info: object) -> None:
        self.done += n
        self.bar.update(n)
        if info:
            self.info = " ".join(f"{k}={v}" for k, v in info.items())
            self.bar.set_postfix_str(self.info, refresh=False)
        now = time.monotonic()
        sink = _sink.get()
        if sink:
            sink(self.desc, self.done / max(self.total, 1))
        if not self.tty and now - self.last >= self.every_s:
            self.last = now
            log.info("%s", self.line(now))

    def line(self, now: float) -> str:
        rate = (self.done - self.first) / max(now - self.start, 1e-9)
        eta = _clock((self.total - self.done) / rate) if rate > 0 else "?"
        info = f", {self.info}" if self.info else ""
        return f"{self.desc}: {self.done}/{self.total} {self.unit} ({rate:.3g} {self.unit}/s, ETA {eta}{info})"

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

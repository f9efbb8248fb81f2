"""Named fault points, for the kill-and-resume tests (no sleeps-and-hope).

`SYNTHLOOP_KILL_AT=<point>` makes the process SIGKILL itself when it reaches
that point, e.g. `before:train@1` (a stage is about to start), `after:grade@2`
(its outputs are written but the ledger/DVC has not recorded it yet) or
`mid:train@1` (inside the stage, between its work and its final write).
Unset, every point is a no-op. `SYNTHLOOP_KILL_SCOPE=group` kills the whole
process group instead (e.g. `dvc repro` and its stage), like a machine stopping.
`SYNTHLOOP_KILL_ONCE=<file>` kills only the first process to get there (it writes the file
first): a cluster worker dies once, and the task retried on another worker goes on.
"""

from __future__ import annotations

import os
import signal


def point(name: str) -> None:
    if os.environ.get("SYNTHLOOP_KILL_AT") == name:
        once = os.environ.get("SYNTHLOOP_KILL_ONCE")
        if once:
            try:
                with open(once, "x") as mark:  # exclusive create: one process wins
                    mark.write(str(os.getpid()))
            except FileExistsError:
                return
        if os.environ.get("SYNTHLOOP_KILL_SCOPE") == "group":
            os.killpg(os.getpgid(0), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)

"""Progress: a line every few seconds when stderr is not a terminal, and the installed sink sees every update."""

from __future__ import annotations

import logging

from synthloop.progress import Progress, reporting


def test_plain_lines_off_a_terminal_and_the_sink(caplog):
    seen = []
    with caplog.at_level(logging.INFO, logger="synthloop"), reporting(lambda d, f: seen.append((d, f))):
        with Progress(4, "gen 1: training", unit="step", every_s=0.0) as bar:
            assert not bar.tty  # pytest captures stderr: no bar, lines instead
            for _ in range(4):
                bar.update(1, loss="1.234")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("gen 1: training")]
    assert len(lines) == 4 and lines[-1].startswith("gen 1: training: 4/4 step (")
    assert "ETA" in lines[0] and "loss=1.234" in lines[0]
    assert seen == [("gen 1: training", f) for f in (0.25, 0.5, 0.75, 1.0)]


def test_lines_are_throttled_and_no_sink_outside_reporting(caplog):
    with caplog.at_level(logging.INFO, logger="synthloop"), Progress(100, "sampling", every_s=3600) as bar:
        for _ in range(100):
            bar.update(1)
    assert not [r for r in caplog.records if r.getMessage().startswith("sampling:")]

"""matplotlib without a display, and PNGs written atomically with no timestamp (byte-stable)."""

from __future__ import annotations

from pathlib import Path

from . import io


def pyplot():
    """matplotlib.pyplot on the Agg backend (imported on first use: it is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, out: Path, dpi: int = 100) -> None:
    """Write `fig` to `out` atomically; no Software/date metadata, so equal figures are equal bytes."""
    with io.atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, metadata={"Software": None})

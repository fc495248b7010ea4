"""Figures of the studies: matplotlib without a display, created and saved in one way."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def new_axes(figsize: tuple[float, float], ncols: int = 1) -> tuple[Any, Any]:
    """A figure and its axes (one, or a row of ``ncols``), drawn off-screen (Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(1, ncols, figsize=figsize)


def save_figure(fig: Any, path: Path) -> None:
    """Write ``fig`` as a 120-dpi PNG and free it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

"""Plot helpers shared by every stage: a headless backend and byte-stable PNGs."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # headless: no display on cluster nodes
import matplotlib.pyplot as plt  # noqa: E402

from empathy_workflow.core.io import atomic_path


def save_figure(figure, path: str | os.PathLike, dpi: int = 120) -> None:
    """Save and close; no timestamp metadata, so the same data gives the same file."""
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=dpi, format="png", metadata={"Software": None})
    plt.close(figure)


def new_figure(width: float = 6.0, height: float = 4.0):
    return plt.subplots(figsize=(width, height))

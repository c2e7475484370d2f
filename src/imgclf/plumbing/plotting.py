"""Saving PNG figures whose bytes depend only on what they show.

Importing this module chooses matplotlib's Agg backend (no screen needed); :func:`save_figure` leaves
out matplotlib's version stamp, so the same results give the same bytes and DVC sees no change on a
rerun. Every figure of the project is saved through it: the resize stage's data figure, the train
and evaluate stages' figures, ``imgclf lr-find``'s plot.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.figure import Figure  # noqa: E402

from imgclf.plumbing.files import atomic_file  # noqa: E402

DPI = 100


def save_figure(figure: Figure, path: Path) -> None:
    """Write ``figure`` as a PNG (whole or not at all) without matplotlib's version stamp, and free it."""
    with atomic_file(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(figure)

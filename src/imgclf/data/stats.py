"""What the data is, before it was resized: class balance per split, the source images' sizes,
aspect ratios and modes, and how many were enlarged rather than shrunk.

The resize stage feeds each image's :class:`~imgclf.data.images.SourceImage` to :class:`SourceStatistics`
as it comes back from the workers; what is kept are counts (per size, per aspect-ratio bin, per
mode), so memory grows with the number of distinct sizes, never with the number of images. The
tables are DVC plots (``metrics/data/``) and one PNG (``metrics/figures/resize/data.png``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from imgclf.data.images import SourceImage
from imgclf.plumbing.files import write_csv

# Aspect ratio (width / height) bins: named shapes a person recognises, edges halfway between them
# on a log scale. Portrait below 1, landscape above.
ASPECT_RATIOS = (("1:3", 1 / 3), ("1:2", 1 / 2), ("2:3", 2 / 3), ("3:4", 3 / 4), ("1:1", 1.0), ("4:3", 4 / 3),
                 ("3:2", 3 / 2), ("16:9", 16 / 9), ("2:1", 2.0), ("3:1", 3.0))


def aspect_bin(width: int, height: int) -> str:
    """The named aspect ratio nearest (on a log scale) to ``width / height``."""
    ratio = math.log(width / height)
    return min(ASPECT_RATIOS, key=lambda named: abs(math.log(named[1]) - ratio))[0]


@dataclass
class SourceStatistics:
    """Counts over the source images of one split."""

    size: tuple[int, int]  # the training size (height, width)
    sizes: Counter[tuple[int, int]] = field(default_factory=Counter)  # (width, height) -> images
    aspects: Counter[str] = field(default_factory=Counter)
    modes: Counter[str] = field(default_factory=Counter)
    enlarged: int = 0

    def add(self, image: SourceImage) -> None:
        self.sizes[(image.width, image.height)] += 1
        self.aspects[aspect_bin(image.width, image.height)] += 1
        self.modes[image.mode] += 1
        self.enlarged += image.enlarged_to(self.size)

    @property
    def images(self) -> int:
        return sum(self.sizes.values())

    def summary(self) -> dict[str, object]:
        """For ``metrics/data/splits.csv``: orientation, enlarged and mode counts."""
        portrait = sum(count for (width, height), count in self.sizes.items() if width < height)
        landscape = sum(count for (width, height), count in self.sizes.items() if width > height)
        return {"enlarged": self.enlarged, "shrunk_or_kept": self.images - self.enlarged, "portrait": portrait,
                "landscape": landscape, "square": self.images - portrait - landscape,
                "modes": dict(sorted(self.modes.items()))}


def class_balance_rows(kept_per_class: Mapping[str, Mapping[str, int]]) -> list[tuple[str, str, int]]:
    """``split, class, images`` for the class-balance plot (a bar per split and class)."""
    return [(split, f"{label} ({split})", count) for split, counts in kept_per_class.items()
            for label, count in counts.items()]


def size_rows(statistics: Mapping[str, SourceStatistics]) -> list[tuple[str, int, int, int]]:
    """``split, width, height, images``: each distinct source size."""
    return [(split, width, height, count) for split, stats in statistics.items()
            for (width, height), count in sorted(stats.sizes.items())]


def aspect_rows(statistics: Mapping[str, SourceStatistics]) -> list[tuple[str, str, int]]:
    """``split, aspect_ratio, images`` for every named ratio (zero where none), portrait to landscape."""
    return [(split, f"{name} ({split})", stats.aspects[name]) for split, stats in statistics.items()
            for name, _ in ASPECT_RATIOS]


def draw_data(kept_per_class: Mapping[str, Mapping[str, int]], statistics: Mapping[str, SourceStatistics],
              path: Path) -> None:
    """One PNG: class balance per split, source sizes (width against height), aspect ratios."""
    import matplotlib.pyplot as plt
    import numpy as np

    from imgclf.plumbing.plotting import save_figure  # it chooses the Agg backend before any figure is made

    figure, (balance, sizes, aspects) = plt.subplots(1, 3, figsize=(16, 4.8), layout="constrained")
    classes = sorted({label for counts in kept_per_class.values() for label in counts})
    positions = np.arange(len(classes))
    width = 0.8 / max(1, len(kept_per_class))
    for offset, (split, counts) in enumerate(kept_per_class.items()):
        balance.barh(positions + offset * width, [counts.get(label, 0) for label in classes], height=width,
                     label=split)
    balance.set_yticks(positions + width * (len(kept_per_class) - 1) / 2, classes,
                       fontsize=8 if len(classes) <= 30 else 5)
    balance.invert_yaxis()
    balance.set_xlabel("images")
    balance.set_title("Class balance per split")
    balance.legend()

    target_height, target_width = next(iter(statistics.values())).size
    for split, stats in statistics.items():
        points = sorted(stats.sizes.items())
        if points:
            weights = np.array([count for _, count in points], dtype=float)
            sizes.scatter([w for (w, _), _ in points], [h for (_, h), _ in points],
                          s=12 + 60 * weights / weights.max(), alpha=0.5, label=split)
    sizes.axvline(target_width, color="grey", linestyle=":")
    sizes.axhline(target_height, color="grey", linestyle=":", label=f"training size {target_width}x{target_height}")
    sizes.set_xlabel("source width (pixels)")
    sizes.set_ylabel("source height (pixels)")
    enlarged = sum(stats.enlarged for stats in statistics.values())
    total = sum(stats.images for stats in statistics.values())
    sizes.set_title(f"Source sizes: {enlarged} of {total} images enlarged")
    sizes.legend(fontsize=8)

    names = [name for name, _ in ASPECT_RATIOS]
    bottom = np.zeros(len(names))
    for split, stats in statistics.items():
        heights = np.array([stats.aspects[name] for name in names], dtype=float)
        aspects.bar(names, heights, bottom=bottom, label=split)
        bottom += heights
    aspects.set_xlabel("aspect ratio (width:height; portrait left, landscape right)")
    aspects.set_ylabel("images")
    aspects.set_title("Aspect ratios")
    aspects.legend()
    save_figure(figure, path)


def write_tables(folder: Path, kept_per_class: Mapping[str, Mapping[str, int]],
                 statistics: Mapping[str, SourceStatistics]) -> None:
    """The data's DVC plots in ``folder``: class_balance.csv, source_sizes.csv, aspect_ratios.csv."""
    write_csv(folder / "class_balance.csv", ["split", "class", "images"], class_balance_rows(kept_per_class))
    write_csv(folder / "source_sizes.csv", ["split", "width", "height", "images"], size_rows(statistics))
    write_csv(folder / "aspect_ratios.csv", ["split", "aspect_ratio", "images"], aspect_rows(statistics))

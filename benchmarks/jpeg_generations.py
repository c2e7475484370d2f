"""What one JPEG generation does to 32x32 pixels: the error the shared CIFAR-10 copy's re-encoding added.

    .venv/bin/python benchmarks/jpeg_generations.py     # about 15 seconds; needs ../shared/datasets

The shared CIFAR-10 copy was saved from the official pixels as JPEG at quality 75 with 4:2:0
chroma subsampling; the official pixels are not here, so the error of that first generation cannot
be measured on CIFAR-10 itself. This script measures it on stand-ins and relates it to what
``cifar_time_to_accuracy.py --reencode`` can do to the copy:

1. the 2,000 real flower photos, centre-cropped and downsized to 32x32 (Lanczos) as CIFAR-10's
   pictures were downsized: the mean squared error (pixels 0-255) of a first generation at quality
   75, 4:2:0, and of a second one on it, on the same block grid and on a grid moved by 4 pixels;
2. the copy's own images (every ``--step``-th training image): the same second generations.

The first generation's error over the moved-grid generation's, on the photos, times the copy's own
moved-grid error, estimates the error the copy's first generation added to CIFAR-10. With the
accuracy a moved-grid generation costs the ``airbench`` recipe (``cifar_time_to_accuracy.py
--reencode 75 --reencode-offset 4``), it gives the first generation's cost, assuming the cost grows
in proportion to the error (benchmarks/README.md says how far that holds).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"

from cifar_time_to_accuracy import jpeg_generation, squared_error  # noqa: E402  (benchmarks/, beside this script)
from targets import Targets  # noqa: E402

SIZE = 32
QUALITY = 75  # the shared copy's
MOVED = 4  # pixels: half a luminance block, a quarter of a 4:2:0 chroma block


def thumbnail(path: Path) -> np.ndarray:
    """The photo's centre square, downsized to SIZE x SIZE with Lanczos."""
    with Image.open(path) as opened:
        image = opened.convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    square = image.crop((left, top, left + side, top + side))
    return np.asarray(square.resize((SIZE, SIZE), Image.Resampling.LANCZOS))


def second_generations(pixels: np.ndarray) -> tuple[float, float]:
    """The error of one more generation at QUALITY on the same grid, and on a grid moved by MOVED pixels."""
    return (squared_error(pixels, jpeg_generation(pixels, QUALITY)[1]),
            squared_error(pixels, jpeg_generation(pixels, QUALITY, MOVED)[1]))


def main() -> int:
    targets = Targets()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--step", type=int, default=10, help="every STEP-th CIFAR-10 training image")
    args = parser.parse_args()
    for archive in ("flowers-photos.tar", "cifar10-jpg.tar.gz"):
        if not (DATASETS / archive).is_file():
            sys.exit(f"needs {DATASETS / archive} (see ../shared/datasets/README.md)")

    with tempfile.TemporaryDirectory(prefix="jpeg-generations-") as scratch:
        for archive in ("flowers-photos.tar", "cifar10-jpg.tar.gz"):
            with tarfile.open(DATASETS / archive) as opened:
                opened.extractall(scratch, filter="data")
        first, same, moved = [], [], []
        for path in sorted(Path(scratch, "flowers").rglob("*.jpg")):
            original = thumbnail(path)
            generation = jpeg_generation(original, QUALITY)[1]
            first.append(squared_error(original, generation))
            errors = second_generations(generation)
            same.append(errors[0])
            moved.append(errors[1])
        copy_same, copy_moved = [], []
        for path in sorted(Path(scratch, "cifar10", "train").rglob("*.jpg"))[::args.step]:
            with Image.open(path) as image:
                errors = second_generations(np.asarray(image.convert("RGB")))
            copy_same.append(errors[0])
            copy_moved.append(errors[1])

    def row(name: str, values: list[float]) -> str:
        mean = statistics.fmean(values)
        return f"| {name} | {len(values)} | {mean:.1f} | {10 * np.log10(255 ** 2 / mean):.1f} dB |"

    print(f"JPEG quality {QUALITY}, 4:2:0, {SIZE}x{SIZE} pixels; mean squared error on pixels 0-255 (and PSNR):")
    print("| generation | images | mean squared error | PSNR |\n| --- | --- | --- | --- |")
    print(row("flower photos: the first, from the downsized pixels", first))
    print(row("flower photos: a second, the same block grid", same))
    print(row(f"flower photos: a second, the grid moved by {MOVED} pixels", moved))
    print(row("the CIFAR-10 copy: one more, the same block grid", copy_same))
    print(row(f"the CIFAR-10 copy: one more, the grid moved by {MOVED} pixels", copy_moved))
    ratio = statistics.fmean(first) / statistics.fmean(moved)
    print(f"the first generation's error over a moved-grid one's, on the photos: {ratio:.2f}; the CIFAR-10 copy's "
          f"first generation added an estimated {ratio * statistics.fmean(copy_moved):.0f} (mean squared error)")
    return targets.exit_status()


if __name__ == "__main__":
    sys.exit(main())

"""Resize benchmark: the resize stage's code against the seeds' way, on 12-megapixel JPEG photos.

    .venv/bin/python benchmarks/resize.py                # 24 photos, sizes 224 and 64, 3 runs each side
    .venv/bin/python benchmarks/resize.py --photos 48 --repeats 5

The seeds' way, in one process: ``Image.open``, ``convert("RGB")``, ``resize(..., LANCZOS)``, ``save``
(under the photo's own name, so as a JPEG). Ours: :func:`imgclf.data.images.resize_files` and
:func:`imgclf.data.dataset.save_image_set`, exactly what the resize stage runs, on all cores. Both read
the same files and write into a fresh folder (the seeds' way a file per photo, ours one packed
file); each side runs ``--repeats`` times and the median wall time counts (the machine is shared
and noisy).

The photos are scikit-learn's two bundled real photographs (china.jpg, flower.jpg: 640x427),
cropped, flipped and enlarged to 4256x2848 (12.1 megapixels) with LANCZOS, with a little
Gaussian noise as a camera sensor leaves, saved at JPEG quality 92: files of about 2 MB that
compress like photos, not like flat upscales.

Quality: each of our outputs is compared with a LANCZOS resize of the fully decoded photo; the
PSNR must be at least 35 dB. The levers are also timed one by one in a single process (draft
decoding, reducing_gap), then all cores. The last line is the ratio to the seeds' throughput.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_sample_images
from targets import Targets  # benchmarks/targets.py, beside this script

from imgclf.data.dataset import ImageSet, load_image_set, save_image_set
from imgclf.data.images import REDUCING_GAP, ResizeJob, draft_request, resize_files

PHOTO_SIZE = (4256, 2848)  # width, height: 12.1 megapixels, a 3:2 camera sensor
TARGET_SIZES = (224, 64)
PSNR_TARGET = 35.0
RATIO_TARGET = 4.0


def make_photos(folder: Path, count: int) -> list[Path]:
    """``count`` 12-megapixel JPEGs made from real photos (see the module docstring)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    originals = [Image.fromarray(pixels) for pixels in load_sample_images().images]
    paths = []
    for number in range(count):
        photo = originals[number % len(originals)]
        left, top = (number * 7) % 40, (number * 5) % 30  # a different crop for every file
        photo = photo.crop((left, top, left + 600, top + 400))
        if number % 4 >= 2:
            photo = photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        large = np.asarray(photo.resize(PHOTO_SIZE, Image.Resampling.LANCZOS), dtype=np.float32)
        large += rng.normal(0.0, 3.0, size=large.shape)
        path = folder / f"photo_{number:03d}.jpg"
        Image.fromarray(np.clip(large, 0, 255).astype(np.uint8)).save(path, quality=92)
        paths.append(path)
    return paths


def seeds_way(paths: list[Path], output: Path, side: int) -> None:
    for path in paths:
        image = Image.open(path).convert("RGB").resize((side, side), Image.Resampling.LANCZOS)
        image.save(output / path.name)


def one_lever(paths: list[Path], output: Path, side: int, draft: bool, reducing_gap: float | None) -> None:
    """One process, the seeds' steps plus the chosen levers, saved as our stage saves (PNG, level 1)."""
    for path in paths:
        with Image.open(path) as source:
            if draft:
                source.draft("RGB", draft_request(source, (side, side), "stretch"))
            image = source.convert("RGB").resize((side, side), Image.Resampling.LANCZOS, reducing_gap=reducing_gap)
        image.save(output / f"{path.stem}.png", compress_level=1)


def ours(paths: list[Path], output: Path, side: int, workers: int | None = None) -> None:
    """What the resize stage does for a split: resize on ``workers`` cores, write the split folder."""
    images, outcomes = resize_files([ResizeJob(path) for path in paths], (side, side), "stretch", max_pixels=200e6,
                                    workers=workers)
    assert not any(outcome.action == "skipped" for outcome in outcomes), outcomes
    save_image_set(output / "photos", ImageSet(images, np.zeros(len(paths), np.int32),
                                                    tuple(path.name for path in paths), ("photo",)))


def median_seconds(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        output = Path(tempfile.mkdtemp(prefix="resize-bench-"))
        start = time.perf_counter()
        run(output)
        times.append(time.perf_counter() - start)
        shutil.rmtree(output)
    return statistics.median(times)


def psnr(ours_pixels: np.ndarray, reference: np.ndarray) -> float:
    error = np.mean((ours_pixels.astype(np.float64) - reference.astype(np.float64)) ** 2)
    return float("inf") if error == 0 else 10 * np.log10(255.0**2 / error)


def quality(paths: list[Path], side: int) -> tuple[float, float]:
    """(lowest, mean) PSNR of our outputs against LANCZOS from the fully decoded photo."""
    output = Path(tempfile.mkdtemp(prefix="resize-quality-"))
    ours(paths, output, side)
    resized = load_image_set(output / "photos").images
    scores = []
    for path, pixels in zip(paths, resized, strict=True):
        with Image.open(path) as image:
            reference = np.asarray(image.convert("RGB").resize((side, side), Image.Resampling.LANCZOS))
        scores.append(psnr(pixels, reference))
    shutil.rmtree(output)
    return min(scores), statistics.mean(scores)


def main() -> int:
    targets = Targets()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"Pillow {Image.__version__}")
    with tempfile.TemporaryDirectory(prefix="resize-photos-") as scratch:
        paths = make_photos(Path(scratch), args.photos)
        megabytes = sum(path.stat().st_size for path in paths) / 1e6
        print(f"{len(paths)} JPEG photos of {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} "
              f"({PHOTO_SIZE[0] * PHOTO_SIZE[1] / 1e6:.1f} MP), {megabytes / len(paths):.1f} MB each")
        ratios = {}
        for side in TARGET_SIZES:
            count = len(paths)
            variants = {
                "seeds' way (open, convert, LANCZOS, save; 1 process)": partial(seeds_way, paths, side=side),
                "+ draft decoding only (1 process)": partial(one_lever, paths, side=side, draft=True,
                                                             reducing_gap=None),
                f"+ reducing_gap={REDUCING_GAP:g} only (1 process)": partial(one_lever, paths, side=side, draft=False,
                                                                            reducing_gap=REDUCING_GAP),
                "resize stage code, 1 process": partial(ours, paths, side=side, workers=1),
                f"resize stage code, all {os.cpu_count()} cores": partial(ours, paths, side=side),
            }
            print(f"\nto {side}x{side}: median of {args.repeats} runs")
            rates = {}
            for name, run in variants.items():
                seconds = median_seconds(run, args.repeats)
                rates[name] = count / seconds
                print(f"  {name:<58} {rates[name]:7.1f} images/s")
            baseline = rates[next(iter(variants))]
            ratios[side] = rates[list(variants)[-1]] / baseline
            lowest, mean = quality(paths, side)
            print(f"  PSNR against a full-decode LANCZOS resize: lowest {lowest:.1f} dB, mean {mean:.1f} dB "
                  f"(target >= {PSNR_TARGET:g}): {targets.check(f'PSNR at {side}', lowest >= PSNR_TARGET)}")
    print()
    for side, ratio in ratios.items():
        print(f"{side}x{side}: {ratio:.1f}x the seeds' throughput (target >= {RATIO_TARGET:g}x): "
              f"{targets.check(f'{side}x{side} >= {RATIO_TARGET:g}x', ratio >= RATIO_TARGET)}")
    print(f"resize throughput ratio (ours / seeds', lowest over sizes): {min(ratios.values()):.2f}")
    return targets.exit_status()


if __name__ == "__main__":
    sys.exit(main())

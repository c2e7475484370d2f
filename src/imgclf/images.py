"""Bring any image file to the training size as 8-bit RGB.

Handles what real folders hold: grayscale, palette, RGBA and LA (composited on a fixed background),
CMYK, 16- and 32-bit integer images (scaled to 8 bits, not clipped), EXIF orientation. A file that
cannot be used is not fatal: :func:`resize_files` returns it with the reason, for the report.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

logger = logging.getLogger(__name__)

# Transparent pixels become this colour: a fixed choice, so the same file always gives the same pixels.
BACKGROUND = (255, 255, 255)
RESAMPLING = Image.Resampling.LANCZOS
# What decoding a bad file raises in Pillow; anything else is a bug and stops the stage.
DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError,
                 Image.DecompressionBombError)


@dataclass(frozen=True)
class ResizeJob:
    source: Path
    destination: Path


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB without losing the picture."""
    if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        image = _high_depth_to_8bit(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _high_depth_to_8bit(image: Image.Image) -> Image.Image:
    """Scale a 16-bit (or 32-bit) grayscale image to 8 bits by its bit depth, not by clipping."""
    pixels = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        top = 1.0 if pixels.max(initial=0.0) <= 1.0 else 255.0
    elif image.mode.startswith("I;16") or pixels.max(initial=0) <= 65535:
        top = 65535.0
    else:
        top = float(2**32 - 1)
    scaled = np.clip(np.rint(pixels * (255.0 / top)), 0, 255).astype(np.uint8)
    return Image.fromarray(scaled, mode="L")


def fit_to_size(image: Image.Image, size: tuple[int, int], mode: str) -> Image.Image:
    """Resize an RGB image to (height, width): ``stretch``, ``pad`` (letterbox) or ``crop`` (center)."""
    height, width = size
    if mode == "stretch":
        return image.resize((width, height), RESAMPLING)
    if mode == "pad":
        return ImageOps.pad(image, (width, height), method=RESAMPLING, color=BACKGROUND)
    if mode == "crop":
        return ImageOps.fit(image, (width, height), method=RESAMPLING)
    raise ValueError(f"unknown resize mode {mode!r}; choose stretch, pad or crop")


def load_rgb(path: Path) -> Image.Image:
    """Open and fully decode an image file, upright (EXIF orientation applied), as RGB."""
    with Image.open(path) as image:
        image.load()
        upright = ImageOps.exif_transpose(image)
        return to_rgb(upright)


def resize_file(job: ResizeJob, size: tuple[int, int], mode: str) -> tuple[Path, str | None]:
    """Resize one file; return its source and None, or the reason it cannot be used."""
    try:
        image = fit_to_size(load_rgb(job.source), size, mode)
    except DECODE_ERRORS as error:
        return job.source, f"{type(error).__name__}: {error}"
    job.destination.parent.mkdir(parents=True, exist_ok=True)
    # compress_level 1: lossless like any PNG, several times faster to write than the default 6.
    image.save(job.destination, format="PNG", compress_level=1)
    return job.source, None


def resize_files(jobs: Sequence[ResizeJob], size: tuple[int, int], mode: str,
                 workers: int | None = None) -> list[tuple[Path, str]]:
    """Resize every job on all cores with a progress bar; return (file, reason) for unusable ones."""
    workers = workers or os.cpu_count() or 1
    work = partial(resize_file, size=size, mode=mode)
    chunk_size = max(1, min(256, len(jobs) // (workers * 8) or 1))
    unusable: list[tuple[Path, str]] = []
    with ProcessPoolExecutor(max_workers=workers) as executor:
        results = executor.map(work, jobs, chunksize=chunk_size)
        for source, reason in tqdm(results, total=len(jobs), desc="resizing", unit="image", disable=None):
            if reason is not None:
                logger.warning("skipping %s: %s", source, reason)
                unusable.append((source, reason))
    return unusable


def output_name(source: Path, taken: set[str]) -> str:
    """The PNG name for ``source`` in its output folder: its stem, unless another file took it."""
    name = f"{source.stem}.png"
    if name in taken:
        name = f"{source.name.replace('.', '_')}.png"
    taken.add(name)
    return name

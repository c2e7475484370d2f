"""Bring any image file to the training size as 8-bit RGB.

Handles what real folders hold: grayscale, palette, RGBA and LA (composited on a fixed background),
CMYK, 16- and 32-bit integer images (scaled to 8 bits, not clipped), EXIF orientation, animated
images (first frame). A file that cannot be used is not fatal: :func:`iter_resized` yields it with
the reason, and likewise each file that was used only after a repair, for the report.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import io
import logging
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import simplejpeg
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from imgclf.plumbing.errors import PipelineError

logger = logging.getLogger(__name__)

# Transparent pixels become this colour: a fixed choice, so the same file always gives the same pixels.
BACKGROUND = (255, 255, 255)
RESAMPLING = Image.Resampling.LANCZOS
# Speed levers, measured by benchmarks/resize.py (see benchmarks/README.md):
# - a JPEG is decoded at the smallest libjpeg scale (1/2, 1/4, 1/8: Image.draft) that still leaves
#   DRAFT_MARGIN times the pixels the resize needs on each side, so LANCZOS has detail to work with;
# - LANCZOS first shrinks by whole factors with a box filter while the image stays REDUCING_GAP times
#   larger than the target (Pillow's reducing_gap; 3 is "indistinguishable from fair resampling").
DRAFT_MARGIN = 2
REDUCING_GAP = 3.0
# EXIF orientations that turn the picture by 90 degrees: its stored width is its upright height.
TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)
# What decoding a bad file raises in Pillow; anything else is a bug and stops the stage. Only
# unusable_image_errors() catches these: ValueError is among them, and so is every PipelineError.
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError,
                  Image.DecompressionBombError)
# Pillow modes of more than 8 bits per pixel, scaled down to 8 bits by their depth.
HIGH_DEPTH_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N", "F")
# The size limit is ours (resize.max_megapixels), checked from the header before decoding, so that
# an image over Pillow's own limit (a 400-megapixel panorama) is listed as skipped instead of
# stopping the stage. A user's files are opened only through this module (image_format in the
# download stage, the decodes of resize and predict), so the setting holds wherever they are read.
Image.MAX_IMAGE_PIXELS = None


class TooLargeError(ValueError):
    """The image's header claims more pixels than resize.max_megapixels allows."""


class UnusableImageError(Exception):
    """A file that cannot be used as an image; the message is the reason, for the report."""


@contextlib.contextmanager
def unusable_image_errors() -> Iterator[None]:
    """Turn what Pillow raises for a bad file into :class:`UnusableImageError`, for the caller to list.

    A :class:`PipelineError` is a ``ValueError`` too, but a mistake a person must fix (a stale
    split, a bad setting): it passes through and stops the stage instead of becoming a skipped file.
    """
    try:
        yield
    except PipelineError:
        raise
    except _DECODE_ERRORS as error:
        raise UnusableImageError(f"{type(error).__name__}: {error}") from error


class StaleSplitError(PipelineError):
    """A file differs from (or is missing since) the digest the split stage recorded for it."""


@dataclass(frozen=True)
class ResizeJob:
    """A file to resize and, when the split recorded it, the SHA-256 its bytes must have."""

    source: Path
    sha256: str | None = None


@dataclass(frozen=True)
class Decoded:
    """A decoded image with what it needed (``repairs``) and what is wrong with its file (``warnings``)."""

    image: Image.Image
    repairs: list[str]
    warnings: list[str]
    source: SourceImage | None = None  # the file's own size and mode, before any of that


@dataclass(frozen=True)
class SourceImage:
    """A file's image as it was: its upright size (EXIF rotation applied) and Pillow's mode."""

    width: int
    height: int
    mode: str

    def enlarged_to(self, size: tuple[int, int]) -> bool:
        """Whether resizing to ``size`` (height, width) enlarges it along either side."""
        return self.height < size[0] or self.width < size[1]


@dataclass(frozen=True)
class ResizeOutcome:
    """What happened to one file: ``used``; ``repaired`` or ``warning`` (used, listed); ``skipped``;
    and, where it could be read, the image it held."""

    source: Path
    action: str
    reason: str = ""
    image: SourceImage | None = None


def image_format(path: Path) -> str:
    """The image format Pillow recognises in the file's content (its name does not matter).

    Raises :class:`UnidentifiedImageError` or :class:`OSError` when the content is no image. Only
    the header is read, and no pixel count is refused here: how large an image may be is the
    resize stage's decision (``resize.max_megapixels``), taken with its reason in its report.
    """
    with Image.open(path) as image:
        return image.format or "unknown"


def repairs_needed(image: Image.Image) -> list[str]:
    """What :func:`load_rgb` changes beyond the usual mode conversion, to list in the report."""
    repairs = []
    frames = getattr(image, "n_frames", 1)
    if frames > 1:
        repairs.append(f"animated ({frames} frames): the first frame is used")
    if image.mode in HIGH_DEPTH_MODES:
        repairs.append(f"{image.mode} pixels scaled to 8 bits")
    if image.mode == "CMYK":
        repairs.append("CMYK converted to RGB")
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        repairs.append("transparency composited on white")
    return repairs


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB without losing the picture."""
    if image.mode in HIGH_DEPTH_MODES:
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


def fitted_size(source: tuple[int, int], size: tuple[int, int], mode: str) -> tuple[int, int]:
    """The (width, height) that ``mode`` scales a (width, height) ``source`` to, before padding or cropping."""
    source_width, source_height = source
    height, width = size
    if mode == "stretch":
        return width, height
    if mode not in ("pad", "crop"):
        raise ValueError(f"unknown resize mode {mode!r}; choose stretch, pad or crop")
    pick = min if mode == "pad" else max
    scale = pick(width / source_width, height / source_height)
    return max(1, round(source_width * scale)), max(1, round(source_height * scale))


def fit_to_size(image: Image.Image, size: tuple[int, int], mode: str) -> Image.Image:
    """Resize an RGB image to (height, width): ``stretch``, ``pad`` (letterbox) or ``crop`` (center)."""
    height, width = size
    scaled_width, scaled_height = fitted_size(image.size, size, mode)
    if mode == "crop":  # resize only the centred region that fills the target
        crop_width = min(image.width, image.width * width / scaled_width)
        crop_height = min(image.height, image.height * height / scaled_height)
        left, top = (image.width - crop_width) / 2, (image.height - crop_height) / 2
        return image.resize((width, height), RESAMPLING, box=(left, top, left + crop_width, top + crop_height),
                            reducing_gap=REDUCING_GAP)
    resized = image.resize((scaled_width, scaled_height), RESAMPLING, reducing_gap=REDUCING_GAP)
    if mode == "stretch":
        return resized
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    canvas.paste(resized, ((width - scaled_width) // 2, (height - scaled_height) // 2))
    return canvas


def draft_request(image: Image.Image, size: tuple[int, int], mode: str) -> tuple[int, int]:
    """The smallest (width, height) to decode ``image`` at for a good resize to ``size`` in ``mode``.

    In the file's stored orientation: an EXIF rotation by 90 degrees swaps the target's sides.
    """
    height, width = size
    if image.getexif().get(ExifTags.Base.Orientation) in TRANSPOSED_ORIENTATIONS:
        height, width = width, height
    needed_width, needed_height = fitted_size(image.size, (height, width), mode)
    return needed_width * DRAFT_MARGIN, needed_height * DRAFT_MARGIN


def jpeg_warnings(data: bytes) -> list[str]:
    """libjpeg's warnings for a JPEG that Pillow decodes without a word (junk before the end marker...).

    A decode at 1/8 scale in strict mode: cheap, and it reads every byte as a full decode does.
    """
    try:
        colorspace = simplejpeg.decode_jpeg_header(data)[2]
        simplejpeg.decode_jpeg(data, colorspace="CMYK" if colorspace in ("CMYK", "YCCK") else "RGB",
                               strict=True, min_height=1, min_width=1)
    except ValueError as warning:
        return [str(warning)]
    return []


def load_rgb(path: Path, max_pixels: float | None = None, size: tuple[int, int] | None = None,
             mode: str = "stretch") -> Decoded:
    """Open and fully decode an image file, upright (EXIF orientation applied), as RGB.

    The pixel count is checked from the header, before anything is decoded. Given the ``size``
    (height, width) and ``mode`` it will be resized to, a JPEG is decoded at a reduced scale that
    still leaves DRAFT_MARGIN times the pixels the resize needs; without, at full size.
    """
    return decode_rgb(Path(path).read_bytes(), max_pixels, size, mode)


def decode_rgb(data: bytes, max_pixels: float | None = None, size: tuple[int, int] | None = None,
               mode: str = "stretch") -> Decoded:
    """:func:`load_rgb` on a file's bytes already read."""
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        if max_pixels is not None and width * height > max_pixels:
            raise TooLargeError(f"{width}x{height} is {width * height / 1e6:,.0f} megapixels, over "
                                f"resize.max_megapixels ({max_pixels / 1e6:g}); refused before decoding")
        repairs = repairs_needed(image)
        rotated = image.getexif().get(ExifTags.Base.Orientation) in TRANSPOSED_ORIENTATIONS
        source = SourceImage(height if rotated else width, width if rotated else height, image.mode)
        if size is not None and image.format == "JPEG":
            image.draft(image.mode, draft_request(image, size, mode))
        image.load()
        warnings = jpeg_warnings(data) if image.format == "JPEG" else []
        return Decoded(to_rgb(ImageOps.exif_transpose(image)), repairs, warnings, source)


def resize_file(job: ResizeJob, size: tuple[int, int], mode: str,
                max_pixels: float | None = None) -> tuple[ResizeOutcome, np.ndarray | None]:
    """Resize one file to uint8 RGB pixels (height, width, 3); None when it had to be skipped.

    The outcome says whether the file was used, repaired or skipped, and why. Given the job's
    ``sha256`` (the digest the split stage recorded), a file that is missing or has changed since
    stops the stage: the split it came from is out of date.
    """
    source = job.source
    try:
        data = source.read_bytes()
    except FileNotFoundError:
        raise StaleSplitError(f"{source} is listed in the split but does not exist: the split is out of date; "
                              "run `dvc repro` to split the current images again.") from None
    except OSError as error:  # unreadable (permissions, an I/O error): this file is skipped, not the run
        return ResizeOutcome(source, "skipped", f"{type(error).__name__}: {error}"), None
    if job.sha256 is not None and hashlib.sha256(data).hexdigest() != job.sha256:
        raise StaleSplitError(f"{source} has changed since the split recorded it: run `dvc repro` to split "
                              "the current images again.")
    try:
        with unusable_image_errors():
            decoded = decode_rgb(data, max_pixels, size, mode)
            pixels = np.asarray(fit_to_size(decoded.image, size, mode), dtype=np.uint8)
    except UnusableImageError as error:
        return ResizeOutcome(source, "skipped", str(error)), None
    if decoded.warnings:
        return ResizeOutcome(source, "warning", "; ".join(decoded.warnings + decoded.repairs), decoded.source), pixels
    if decoded.repairs:
        return ResizeOutcome(source, "repaired", "; ".join(decoded.repairs), decoded.source), pixels
    return ResizeOutcome(source, "used", image=decoded.source), pixels


# Files per task sent to a worker, and how many tasks may be in flight per worker: enough to keep
# every core busy, few enough that the pixels in flight stay about 20 MB at any size and any count
# (2 MB is 13 images at 224x224, 10 ms of work each: the task's own cost is lost in it).
CHUNK_BYTES = 2 * 2**20
CHUNKS_IN_FLIGHT_PER_WORKER = 2


def _resize_chunk(jobs: Sequence[ResizeJob], size: tuple[int, int], mode: str,
                  max_pixels: float | None) -> list[tuple[ResizeOutcome, np.ndarray | None]]:
    return [resize_file(job, size, mode, max_pixels) for job in jobs]


def iter_resized(jobs: Sequence[ResizeJob], size: tuple[int, int], mode: str, max_pixels: float | None = None,
                 workers: int | None = None, description: str = "resizing"
                 ) -> Iterator[tuple[ResizeOutcome, np.ndarray | None]]:
    """Resize every file on all cores with a progress bar; yield each job's outcome and pixels in order.

    Pixels are uint8 RGB (height, width, 3), None for a ``skipped`` file. Only a few chunks of files
    are in flight at a time, so memory does not grow with the number of files: the caller writes
    each image away as it comes. The workers start from a fresh server process ("forkserver"), not
    as forks of the caller: a fork would carry a copy of whatever the caller holds (the manifest of
    every image) into each worker.
    """
    workers = workers or os.cpu_count() or 1
    work = partial(_resize_chunk, size=size, mode=mode, max_pixels=max_pixels)
    chunk_size = max(1, min(256, len(jobs) // (workers * 8) or 1, CHUNK_BYTES // (size[0] * size[1] * 3)))
    pending: collections.deque[Future[list[tuple[ResizeOutcome, np.ndarray | None]]]] = collections.deque()
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as executor, \
            tqdm(total=len(jobs), desc=description, unit="image", disable=None) as progress:
        starts = iter(range(0, len(jobs), chunk_size))
        while True:
            while len(pending) < workers * CHUNKS_IN_FLIGHT_PER_WORKER:
                start = next(starts, None)
                if start is None:
                    break
                pending.append(executor.submit(work, jobs[start:start + chunk_size]))
            if not pending:
                return
            results = pending.popleft().result()
            progress.update(len(results))
            for outcome, pixels in results:
                if pixels is None:
                    logger.warning("skipping %s: %s", outcome.source, outcome.reason)
                yield outcome, pixels


def resize_files(jobs: Sequence[ResizeJob], size: tuple[int, int], mode: str, max_pixels: float | None = None,
                 workers: int | None = None, description: str = "resizing") -> tuple[np.ndarray, list[ResizeOutcome]]:
    """:func:`iter_resized` gathered: the usable files' pixels as one array (count, height, width, 3),
    and every job's outcome. For a few files (benchmarks, tests); the resize stage writes as they come."""
    images = np.empty((len(jobs), *size, 3), dtype=np.uint8)  # filled in order; skipped files leave a tail
    outcomes: list[ResizeOutcome] = []
    used = 0
    for outcome, pixels in iter_resized(jobs, size, mode, max_pixels, workers, description):
        outcomes.append(outcome)
        if pixels is not None:
            images[used] = pixels
            used += 1
    return images[:used], outcomes

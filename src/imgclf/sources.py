"""Where images come from, and how a folder of class subfolders is read.

Two sources so far:

- ``digits``: scikit-learn's bundled handwritten digits (1,797 real 8x8 images, 10 classes),
  written out as PNG files in class folders. Needs no network.
- ``folder``: a folder with one subfolder per class, at any depth. Folders named like
  ``train/``, ``val/`` or ``validation/``, ``test/`` (also ``training_set/``, ``test_set/``...)
  are taken as the source's own split and kept.

The download stage writes every source into the same layout, ``<out>/<class>/<file>`` or
``<out>/<split>/<class>/<file>``, which :func:`scan_folder` reads back in the split stage.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from imgclf.errors import PipelineError

logger = logging.getLogger(__name__)

SUBSETS = ("train", "val", "test")
# Folder names that mark a source's own split, as real datasets spell them (lower-cased).
SUBSET_ALIASES = {
    "train": "train", "training": "train", "train_set": "train", "training_set": "train",
    "val": "val", "valid": "val", "validation": "val", "val_set": "val", "validation_set": "val",
    "test": "test", "testing": "test", "test_set": "test",
}
# Folders that archives and operating systems add and that are never a class.
NOT_CLASS_FOLDERS = {"__MACOSX"}


class SourceError(PipelineError):
    """The source's files cannot form a dataset (no class folders, a single class...)."""


@dataclass(frozen=True)
class LabelledFile:
    """A file found in a class folder, with the source's own split (None when it has none)."""

    path: Path
    label: str
    subset: str | None
    # Unique within its class: the path below the class folder, nested folders joined by "__".
    name: str


@dataclass(frozen=True)
class SkippedFile:
    """A file that will not be used, and why: reported, never silently dropped."""

    path: Path
    reason: str


def _subdirectories(folder: Path) -> list[Path]:
    return sorted(entry for entry in folder.iterdir() if entry.is_dir())


def _files(folder: Path) -> list[Path]:
    return sorted(entry for entry in folder.iterdir() if entry.is_file())


def _skip_wrappers(folder: Path) -> Path:
    """Descend through folders that only wrap one other folder (``dataset/dataset/cats/...``)."""
    while True:
        children = _subdirectories(folder)
        if _files(folder) or len(children) != 1 or not _subdirectories(children[0]):
            return folder
        folder = children[0]


def scan_folder(root: Path) -> tuple[list[LabelledFile], list[SkippedFile]]:
    """List every file under the class folders of ``root``, with its class and its own split.

    A class is a folder's name; every file at any depth under it belongs to it. Files that sit
    outside any class folder are returned as skipped, with the reason.
    """
    root = Path(root)
    if not root.is_dir():
        raise SourceError(f"{root} is not a folder: set data.path to a folder of class subfolders.")
    top = _skip_wrappers(root)
    subset_folders: dict[str, Path] = {}
    for child in _subdirectories(top):
        subset = SUBSET_ALIASES.get(child.name.lower())
        if subset is None:
            continue
        if subset in subset_folders:
            raise SourceError(f"{top} has two folders for the {subset} split: "
                              f"{subset_folders[subset].name}/ and {child.name}/; keep one.")
        subset_folders[subset] = child

    files: list[LabelledFile] = []
    skipped: list[SkippedFile] = []
    if not subset_folders:
        _scan_classes(top, None, files, skipped)
    else:
        if "train" not in subset_folders:
            raise SourceError(f"{top} has {', '.join(f.name + '/' for f in subset_folders.values())} "
                              "but no training folder (train/ or training_set/).")
        split_folders = set(subset_folders.values())
        for child in _subdirectories(top):
            if child not in split_folders:
                skipped.extend(SkippedFile(path, f"beside the split folders, in no split: {child.name}/")
                               for path in _walk_files(child))
        skipped.extend(SkippedFile(path, "not inside a class folder") for path in _files(top))
        for subset, folder in sorted(subset_folders.items()):
            _scan_classes(_skip_wrappers(folder), subset, files, skipped)
    return files, skipped


def _walk_files(folder: Path) -> Iterable[Path]:
    for directory, subdirectories, names in os.walk(folder):
        subdirectories.sort()
        for name in sorted(names):
            yield Path(directory, name)


def _scan_classes(folder: Path, subset: str | None,
                  files: list[LabelledFile], skipped: list[SkippedFile]) -> None:
    skipped.extend(SkippedFile(path, "not inside a class folder") for path in _files(folder))
    for class_folder in _subdirectories(folder):
        if class_folder.name in NOT_CLASS_FOLDERS or class_folder.name.startswith("."):
            skipped.extend(SkippedFile(path, f"inside {class_folder.name}/, which is not a class")
                           for path in _walk_files(class_folder))
            continue
        found = [LabelledFile(path, class_folder.name, subset,
                              "__".join(path.relative_to(class_folder).parts))
                 for path in _walk_files(class_folder)]
        if not found:
            logger.warning("class folder %s is empty", class_folder)
        files.extend(found)


def image_format(path: Path) -> str:
    """The image format Pillow recognises in the file's content (its name does not matter).

    Raises :class:`UnidentifiedImageError` or :class:`OSError` when the content is no image.
    Only the header is read; full decoding (and its errors) happens in the resize stage.
    """
    with Image.open(path) as image:
        return image.format or "unknown"


def check_classes(files: list[LabelledFile], where: Path) -> Counter[str]:
    """Count files per class; a classifier needs at least two classes."""
    counts = Counter(item.label for item in files)
    if len(counts) < 2:
        found = ", ".join(counts) or "none"
        raise SourceError(f"found {len(counts)} class ({found}) with images in {where}: a classifier "
                          "needs at least two class folders, each holding that class's images.")
    return counts


def import_folder(source_root: Path, destination: Path) -> list[SkippedFile]:
    """Copy every image under ``source_root``'s class folders into ``destination``.

    Files are recognised as images by content. Returns the files that were not imported.
    The user's files are copied, never hard-linked: DVC's cache marks linked files read-only,
    which must not happen to the originals.
    """
    source_root = Path(source_root)
    files, skipped = scan_folder(source_root)
    images: list[LabelledFile] = []
    for item in tqdm(files, desc="checking files", unit="file", disable=None):
        try:
            image_format(item.path)
        except (UnidentifiedImageError, OSError) as error:
            skipped.append(SkippedFile(item.path, f"not an image: {error}"))
            continue
        images.append(item)
    counts = check_classes(images, source_root)
    for item in images:
        target = destination.joinpath(*filter(None, [item.subset, item.label, item.name]))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(item.path, target)
    logger.info("imported %d images in %d classes from %s; %d files skipped",
                len(images), len(counts), source_root, len(skipped))
    return skipped


def digits_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's handwritten digits as 8-bit grayscale images (N, 8, 8) and their labels.

    The bundled pixels hold 17 grey levels (0-16); they are scaled to 0-255.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    return images, digits.target.astype(np.int64)


def write_digits(destination: Path) -> int:
    """Write the digits as ``destination/<digit>/<index>.png``; return the number written."""
    images, labels = digits_images()
    for index, (pixels, label) in enumerate(zip(images, labels, strict=True)):
        folder = destination / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, mode="L").save(folder / f"{index:04d}.png")
    logger.info("wrote %d digit images in %d classes", len(labels), len(set(labels.tolist())))
    return len(labels)

"""The class-folder layout every source is written in, and how it is read back.

``<root>/<class>/<file>``, or ``<root>/<split>/<class>/<file>`` when the images come with their own
split. Class folders may sit at any depth below folders that only wrap them, and a class's files
at any depth below it. Folder names like ``train/``, ``val/`` or ``validation/``, ``test/`` (also
``training_set/``, ``test_set/``...) mark a split.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from imgclf.plumbing.errors import PipelineError

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
    """Descend through folders that only wrap one other folder (``dataset/dataset/cats/...``).

    A folder named like a split (``train/``) carries the split, so it is no mere wrapper, unless it
    repeats the split folder it sits in (Kaggle's ``training_set/training_set/cats/``).
    """
    while True:
        children = _subdirectories(folder)
        if _files(folder) or len(children) != 1 or not _subdirectories(children[0]):
            return folder
        if children[0].name.lower() in SUBSET_ALIASES and folder.name.lower() not in SUBSET_ALIASES:
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
                               for path in walk_files(child))
        skipped.extend(SkippedFile(path, "not inside a class folder") for path in _files(top))
        for subset, folder in sorted(subset_folders.items()):
            _scan_classes(_skip_wrappers(folder), subset, files, skipped)
    return files, skipped


def walk_files(folder: Path) -> Iterable[Path]:
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
                           for path in walk_files(class_folder))
            continue
        found = [LabelledFile(path, class_folder.name, subset,
                              "__".join(path.relative_to(class_folder).parts))
                 for path in walk_files(class_folder)]
        if not found:
            logger.warning("class folder %s is empty", class_folder)
            skipped.append(SkippedFile(class_folder, "empty class folder: no images, so no class"))
        files.extend(found)

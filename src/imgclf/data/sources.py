"""Where images come from, and how labelled files are found.

- ``digits``: scikit-learn's bundled handwritten digits (1,797 real 8x8 images, 10 classes),
  written out as PNG files in class folders. Needs no network.
- ``folder``: a folder with one subfolder per class, at any depth. Folders named like
  ``train/``, ``val/`` or ``validation/``, ``test/`` (also ``training_set/``, ``test_set/``...)
  are taken as the source's own split and kept.
- ``csv``: a folder of images and a CSV of file names and labels.
- ``cifar10``, ``cifar100``: the official binary archives (see :mod:`imgclf.data.cifar`).
- ``kaggle``: a competition or dataset archive (see :mod:`imgclf.data.kaggle`), unpacked safely, with
  class folders at any depth or labels in file names (``cat.123.jpg``).

The download stage writes every source into the same layout, ``<out>/<class>/<file>`` or
``<out>/<split>/<class>/<file>`` (see :mod:`imgclf.data.layout`), which the split stage reads back.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from imgclf.data import kaggle
from imgclf.data.archives import extract_nested
from imgclf.data.cifar import CIFAR, write_images
from imgclf.data.downloads import Checksum, fetch
from imgclf.data.images import image_format
from imgclf.data.layout import (
    SUBSET_ALIASES,
    LabelledFile,
    SkippedFile,
    SourceError,
    scan_folder,
    walk_files,
)
from imgclf.data.params import DataParams

logger = logging.getLogger(__name__)


def check_classes(files: list[LabelledFile], where: Path) -> Counter[str]:
    """Count files per class; a classifier needs at least two classes."""
    counts = Counter(item.label for item in files)
    if len(counts) < 2:
        found = ", ".join(counts) or "none"
        raise SourceError(f"found {len(counts)} class ({found}) with images in {where}: a classifier "
                          "needs at least two class folders, each holding that class's images.")
    return counts


def import_files(files: list[LabelledFile], skipped: list[SkippedFile], destination: Path,
                 where: Path) -> list[SkippedFile]:
    """Copy the files that are images (by content) into ``destination/[<split>/]<class>/``.

    Returns ``skipped`` plus the files that are not images. The files are copied, never
    hard-linked: DVC's cache marks linked files read-only, which must not happen to a user's originals.
    """
    skipped = list(skipped)
    images: list[LabelledFile] = []
    for item in tqdm(files, desc="checking files", unit="file", disable=None):
        try:
            image_format(item.path)
        except (UnidentifiedImageError, OSError) as error:
            skipped.append(SkippedFile(item.path, f"not an image: {error}"))
            continue
        images.append(item)
    counts = check_classes(images, where)
    for item in images:
        target = destination.joinpath(*filter(None, [item.subset, item.label, item.name]))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(item.path, target)
    logger.info("imported %d images in %d classes from %s; %d files skipped",
                len(images), len(counts), where, len(skipped))
    return skipped


def import_folder(source_root: Path, destination: Path) -> list[SkippedFile]:
    """Import a folder of class subfolders (see :func:`scan_folder`)."""
    return import_files(*scan_folder(source_root), destination, source_root)


def _safe_label(label: str, source: str) -> str:
    label = str(label).strip()
    if not label or label in (".", "..") or "/" in label or "\\" in label:
        raise SourceError(f"{label!r} from {source} cannot be a class name (it becomes a folder name).")
    return label


def scan_named_files(root: Path, label_pattern: str) -> tuple[list[LabelledFile], list[SkippedFile]]:
    """Files whose names carry their label (``cat.123.jpg``): the pattern's first group is the label.

    A folder named like a split (``train/``, ``test/``) gives its files that split. Files whose name
    does not match are skipped; a folder of only such files (Kaggle's unlabelled ``test1/``) is
    logged once.
    """
    pattern = re.compile(label_pattern)
    files: list[LabelledFile] = []
    skipped: list[SkippedFile] = []
    unlabelled: Counter[Path] = Counter()
    for path in walk_files(root):
        match = pattern.match(path.name)
        if match is None:
            skipped.append(SkippedFile(path, f"no label in its name (data.label_pattern {label_pattern})"))
            unlabelled[path.parent] += 1
            continue
        subsets = [SUBSET_ALIASES[part.lower()] for part in path.relative_to(root).parts[:-1]
                   if part.lower() in SUBSET_ALIASES]
        files.append(LabelledFile(path, _safe_label(match.group(1), path.name), subsets[-1] if subsets else None,
                                  "__".join(path.relative_to(root).parts)))
    labelled_folders = {item.path.parent for item in files}
    for folder, count in sorted(unlabelled.items()):
        if folder not in labelled_folders:
            logger.info("skipping %s: %d files without a label in their names (an unlabelled test set?)",
                        folder, count)
    return files, skipped


def scan_labelled_tree(root: Path, label_pattern: str) -> tuple[list[LabelledFile], list[SkippedFile]]:
    """Class folders at any depth if there are at least two of them, else labels in file names."""
    files, skipped = scan_folder(root)
    if len({item.label for item in files}) >= 2:
        return files, skipped
    return scan_named_files(root, label_pattern)


def scan_labels_csv(folder: Path, labels_csv: Path, file_column: str, label_column: str,
                    extension: str | None) -> tuple[list[LabelledFile], list[SkippedFile]]:
    """Files of ``folder`` labelled by the rows of a CSV; missing files and unlisted files are reported."""
    import pandas as pd

    if not Path(folder).is_dir():
        raise SourceError(f"{folder} is not a folder: set data.path to the folder of images.")
    try:
        table = pd.read_csv(labels_csv, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise SourceError(f"cannot read data.labels_csv {labels_csv}: {error}") from None
    missing_columns = [column for column in (file_column, label_column) if column not in table.columns]
    if missing_columns:
        raise SourceError(f"{labels_csv} has no column {missing_columns[0]!r}; its columns are "
                          f"{', '.join(table.columns)}. Set data.csv.file_column and data.csv.label_column.")
    files: list[LabelledFile] = []
    skipped: list[SkippedFile] = []
    listed: set[Path] = set()
    for row_number, (name, label) in enumerate(zip(table[file_column], table[label_column], strict=True), start=2):
        relative = Path(name)
        if extension and not relative.suffix:
            relative = relative.with_name(relative.name + extension)
        path = Path(folder) / relative
        listed.add(path)
        if not path.is_file():
            skipped.append(SkippedFile(path, f"listed in {labels_csv.name} (line {row_number}) but missing"))
            continue
        files.append(LabelledFile(path, _safe_label(label, f"{labels_csv.name} line {row_number}"), None,
                                  "__".join(relative.parts)))
    skipped.extend(SkippedFile(path, f"no row in {labels_csv.name}")
                   for path in walk_files(Path(folder)) if path not in listed and path != Path(labels_csv))
    return files, skipped


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


def default_cache_dir() -> Path:
    """Where downloaded archives are kept: Keras' own dataset cache (``$KERAS_HOME/datasets``)."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser() / "datasets"


def _required_path(value: str | None, key: str) -> Path:
    """A path param that this source needs (DataParams.validate has checked that it is set)."""
    if value is None:
        raise SourceError(f"{key} is not set: data.source {key.split('.')[0]} needs it.")
    return Path(value).expanduser()


def download_source(params: DataParams, destination: Path, scratch: Path) -> list[SkippedFile]:
    """Bring the images of ``params.source`` into ``destination``; return the files not taken.

    ``scratch`` is an empty temporary folder for unpacking archives, removed by the caller.
    """
    if params.source == "digits":
        write_digits(destination)
        return []
    if params.source == "folder":
        return import_folder(_required_path(params.path, "data.path"), destination)
    if params.source == "csv":
        folder = _required_path(params.path, "data.path")
        found = scan_labels_csv(folder, _required_path(params.labels_csv, "data.labels_csv"), params.csv.file_column,
                                params.csv.label_column, params.csv.extension)
        return import_files(*found, destination, folder)

    cache_dir = Path(params.cache_dir).expanduser() if params.cache_dir else default_cache_dir()
    if params.source in CIFAR:
        spec = CIFAR[params.source]
        checksum = Checksum.parse(params.checksum) if params.checksum else Checksum("md5", spec.md5)
        archive = fetch(params.url or spec.url, cache_dir / Path(urlparse(spec.url).path).name, checksum,
                        params.timeout, params.retries)
        write_images(archive, params.source, params.label_mode, destination)
        return []

    # kaggle: an archive on disk, or one downloaded through the Kaggle API
    if params.archive:
        archive = Path(params.archive).expanduser()
        if not archive.is_file():
            raise SourceError(f"data.archive {archive} does not exist.")
    else:
        archive = kaggle.download(cache_dir / "kaggle", params.kaggle.competition, params.kaggle.dataset)
    unpacked = scratch / "unpacked"
    extract_nested(archive, unpacked, int(params.max_unpacked_gb * 1e9))
    skipped = import_files(*scan_labelled_tree(unpacked, params.label_pattern), destination, archive)
    # name skipped files as "<archive>/<path inside it>": the unpacked copy is temporary
    return [SkippedFile(Path(archive.name) / item.path.relative_to(unpacked), item.reason) for item in skipped]

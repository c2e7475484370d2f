"""Image manifests: what the stages hand on instead of folders to walk.

A manifest is a CSV with a row per image: its path (as the stages see it, from the project root),
its class, its subset and the SHA-256 of its bytes. The download stage indexes data/raw this way
(``data/raw_index.csv``: the subset is the source's own split, empty when it has none) and the split
stage writes its split as one (``data/split.csv``). A stage that depends on a manifest instead of the
folder costs DVC one file to check instead of one per image, and the digests still pin every
image's exact bytes: a change to any image changes the manifest, and a reader can check the file it
opens against its digest.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from imgclf.data.layout import SUBSETS, LabelledFile, scan_folder
from imgclf.plumbing.errors import PipelineError
from imgclf.plumbing.files import atomic_file, file_digest

MANIFEST_COLUMNS = ("file", "label", "subset", "sha256")


class ManifestError(PipelineError):
    """A manifest is missing, or was not written by this version of the pipeline."""


@dataclass(frozen=True)
class ManifestEntry:
    file: str  # "/"-separated, from the project root: data/raw/<class>/<file>
    label: str
    subset: str  # train, val or test; "" in data/raw's index for a source with no split of its own
    sha256: str


def index_folder(root: Path, listed_as: Path) -> list[ManifestEntry]:
    """Every image of a class-folder tree (see :func:`scan_folder`) with its digest, with paths
    as they will read once ``root`` is in place at ``listed_as``."""
    files, _ = scan_folder(root)
    return [ManifestEntry((listed_as / item.path.relative_to(root)).as_posix(), item.label, item.subset or "",
                          file_digest(item.path))
            for item in tqdm(files, desc="indexing", unit="file", disable=None)]


def labelled_files(entries: Iterable[ManifestEntry]) -> list[LabelledFile]:
    """The entries as the split functions take them (the subset being the source's own split)."""
    return [LabelledFile(Path(entry.file), entry.label, entry.subset or None, entry.file) for entry in entries]


def write_manifest(path: Path, entries: Iterable[ManifestEntry]) -> None:
    with atomic_file(path, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(MANIFEST_COLUMNS)
        writer.writerows((entry.file, entry.label, entry.subset, entry.sha256) for entry in entries)


def read_manifest(path: Path, written_by: str) -> list[ManifestEntry]:
    """Read a manifest that the stage ``written_by`` wrote; a missing or foreign one says what to run."""
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            header = tuple(next(reader, ()))
            rows = list(reader)
    except FileNotFoundError:
        raise ManifestError(f"{path} does not exist: run the {written_by} stage first (dvc repro).") from None
    if header != MANIFEST_COLUMNS or any(len(row) != len(MANIFEST_COLUMNS) for row in rows):
        raise ManifestError(f"{path} is not a manifest of columns {','.join(MANIFEST_COLUMNS)}: it was not written "
                            f"by this version of the {written_by} stage; run `dvc repro`.")
    entries = [ManifestEntry(*row) for row in rows]
    wrong = next((entry for entry in entries if entry.subset not in ("", *SUBSETS)), None)
    if wrong is not None:
        raise ManifestError(f"{path}: {wrong.file} has subset {wrong.subset!r}; allowed: {', '.join(SUBSETS)}.")
    return entries

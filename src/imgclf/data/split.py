"""Stratified, seeded train/validation/test split that keeps a source's own split.

- A source with no split of its own: ``test`` and ``val`` are fractions of all its images.
- A source with its own test split (CIFAR-10, a ``train/`` + ``test/`` folder): that test split is
  kept as it is, and validation is carved from the source's training images (``val`` is then a
  fraction of those). A source's own validation split is kept too.

Stratification is scikit-learn's ``train_test_split(stratify=...)``; files are sorted first, so
the split depends on the seed and the files alone, not on the order the filesystem lists them.

The split is handed on as a manifest (``data/split.csv``, see :mod:`imgclf.data.manifest`), not as
folders of links.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sklearn.model_selection import train_test_split

from imgclf.data.layout import SUBSETS, LabelledFile
from imgclf.data.manifest import ManifestEntry, labelled_files
from imgclf.data.near_duplicates import group_keys, hash_files, near_pairs
from imgclf.data.params import SplitParams
from imgclf.plumbing.errors import PipelineError

DUPLICATES_COLUMNS = ("file", "duplicate_of", "action")  # metrics/duplicates.csv


class SplitError(PipelineError):
    """The images cannot be split as asked (a class too small for the fractions, say)."""


def split_items(items: Sequence[LabelledFile], val_fraction: float, test_fraction: float,
                seed: int) -> dict[str, list[LabelledFile]]:
    """Assign every item to exactly one of train, val and test."""
    by_subset: dict[str | None, list[LabelledFile]] = defaultdict(list)
    for item in sorted(items, key=_order):
        by_subset[item.subset].append(item)

    if set(by_subset) == {None}:
        pool = by_subset[None]
        train_and_val, test = _carve(pool, test_fraction, seed, "test")
        # val is a fraction of all images: rescale it to the part that is left after test.
        train, val = _carve(train_and_val, val_fraction / (1.0 - test_fraction), seed, "val")
        return {"train": train, "val": val, "test": test}

    if None in by_subset:
        raise SplitError("some files have a split folder (train/, test/...) and others do not; "
                         "put every class folder inside a split folder, or none.")
    own_split = {subset: files for subset, files in by_subset.items() if subset is not None}
    if "train" not in own_split:
        raise SplitError(f"the source has {', '.join(sorted(own_split))} images but no training images.")
    train = own_split["train"]
    if "test" in own_split:
        test = own_split["test"]
    else:
        train, test = _carve(train, test_fraction, seed, "test")
    if "val" in own_split:
        val = own_split["val"]
    else:
        train, val = _carve(train, val_fraction, seed, "val")
    return {"train": train, "val": val, "test": test}


def _carve(items: list[LabelledFile], fraction: float, seed: int,
           name: str) -> tuple[list[LabelledFile], list[LabelledFile]]:
    """Split ``fraction`` of ``items`` off, stratified by label; return (rest, carved)."""
    counts = Counter(item.label for item in items)
    smallest_label, smallest_count = min(counts.items(), key=lambda pair: (pair[1], pair[0]))
    if smallest_count < 2:
        raise SplitError(
            f"class {smallest_label!r} has {smallest_count} image, too few to carve a stratified "
            f"{name} split: every class needs at least 2 images (more is better); add images or "
            "remove that class folder.")
    carved_count = round(fraction * len(items))
    if carved_count < len(counts) or len(items) - carved_count < len(counts):
        raise SplitError(
            f"a {name} split of {fraction:.3g} of {len(items)} images gives {carved_count}, fewer than "
            f"one per class for {len(counts)} classes; raise split.{name} or add images.")
    labels = [item.label for item in items]
    rest, carved = train_test_split(items, test_size=carved_count, stratify=labels, random_state=seed)
    return sorted(rest, key=_order), sorted(carved, key=_order)


def _order(item: LabelledFile) -> tuple[str, str]:
    return item.label, str(item.path)


def count_by_class(split: dict[str, list[LabelledFile]]) -> dict[str, dict[str, int]]:
    """Images per class in each subset, for logs and metrics."""
    return {subset: dict(sorted(Counter(item.label for item in split[subset]).items()))
            for subset in SUBSETS}


# The split whose copy of a duplicated image is kept: a source's own test split is never thinned.
KEEP_ORDER = {"test": 0, "val": 1, None: 2, "train": 3}


def drop_duplicates(items: Sequence[LabelledFile], digests: dict[Path, str]
                    ) -> tuple[list[LabelledFile], list[tuple[LabelledFile, LabelledFile]]]:
    """Keep one file per content digest; return (kept, [(dropped copy, the file kept instead)])."""
    first: dict[str, LabelledFile] = {}
    for item in sorted(items, key=lambda item: (KEEP_ORDER[item.subset], item.label, str(item.path))):
        first.setdefault(digests[item.path], item)
    kept = [item for item in items if first[digests[item.path]] is item]
    dropped = [(item, first[digests[item.path]]) for item in items if first[digests[item.path]] is not item]
    return kept, dropped


def leaks(split: dict[str, list[LabelledFile]], digests: dict[Path, str]
          ) -> list[tuple[LabelledFile, LabelledFile, str]]:
    """Files whose bytes also sit in an earlier split: (file, its copy, the copy's split)."""
    seen: dict[str, tuple[LabelledFile, str]] = {}
    found = []
    for subset in ("test", "val", "train"):
        for item in split[subset]:
            digest = digests[item.path]
            if digest in seen and seen[digest][1] != subset:
                found.append((item, *seen[digest]))
            seen.setdefault(digest, (item, subset))
    return found


@dataclass(frozen=True)
class SplitResult:
    """The split stage's outcome: the split manifest's rows and the copies it found."""

    entries: list[ManifestEntry]  # train, then val, then test
    duplicates: list[tuple[str, str, str]]  # rows of metrics/duplicates.csv (DUPLICATES_COLUMNS)
    counts: dict[str, dict[str, int]]  # images per split and class


def split_index(indexed: Sequence[ManifestEntry], params: SplitParams) -> SplitResult:
    """Split the download stage's images as ``split`` asks: copies of one picture (the same bytes or,
    with ``split.near_duplicate_bits``, the same perceptual hash) are dropped before splitting with
    ``split.deduplicate``, or listed where they leak across the splits without it."""
    files = labelled_files(indexed)
    digests = {Path(entry.file): entry.sha256 for entry in indexed}
    same = digests  # files with the same key hold the same picture
    if params.near_duplicate_bits is not None:
        paths = [item.path for item in files]
        same = group_keys(paths, digests, near_pairs(hash_files(paths), params.near_duplicate_bits))

    def how(copy: Path, original: Path) -> str:
        return "the same bytes" if digests[copy] == digests[original] else "the same picture (perceptual hash)"

    rows = []
    if params.deduplicate:
        files, dropped = drop_duplicates(files, same)
        rows = [(str(copy.path), str(original.path), f"dropped: {how(copy.path, original.path)}")
                for copy, original in dropped]
    split = split_items(files, params.val, params.test, params.seed)
    if not params.deduplicate:
        rows = [(str(item.path), str(copy.path), f"leakage: {how(item.path, copy.path)} in {subset}")
                for item, copy, subset in leaks(split, same)]
    entries = [ManifestEntry(item.path.as_posix(), item.label, subset, digests[item.path])
               for subset in SUBSETS for item in split[subset]]
    return SplitResult(entries, rows, count_by_class(split))

"""Split stage: a stratified, seeded train/val/test split, keeping a source's own split.

Reads:  data/raw_index.csv (the download stage's manifest of data/raw), params.yaml ``split``
Writes: data/split.csv, the split as a manifest: every image's path, its class, its subset (train,
        val or test) and the SHA-256 of its bytes. A manifest rather than folders of links: DVC
        checks one file instead of one per image (README: "Which outputs are folders");
        metrics/duplicates.csv, files whose bytes repeat another file's, or that hold the same
        picture re-encoded or resized (a perceptual hash within split.near_duplicate_bits): dropped
        (split.deduplicate: true) or, when kept, listed where they leak across splits
Run:    dvc repro split
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from imgclf.data.layout import SUBSETS
from imgclf.data.manifest import ManifestEntry, labelled_files, read_manifest, write_manifest
from imgclf.data.near_duplicates import group_keys, hash_files, near_pairs
from imgclf.data.params import SplitParams
from imgclf.data.split import count_by_class, drop_duplicates, leaks, split_items
from imgclf.plumbing.files import write_csv
from imgclf.plumbing.params import load_section
from imgclf.plumbing.stage import run_stage

logger = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, required=True, help="the download stage's manifest of data/raw")
    parser.add_argument("--output", type=Path, required=True, help="the manifest (CSV) to write")
    parser.add_argument("--duplicates", type=Path, required=True, help="CSV of files with the same bytes")
    args = parser.parse_args()
    params = load_section(SplitParams)

    indexed = read_manifest(args.index, "download")
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
    if rows:
        logger.warning("%d files repeat another file's bytes or picture (%s); see %s", len(rows),
                       "dropped" if params.deduplicate else "kept, and leaking across splits", args.duplicates)

    write_manifest(args.output, [ManifestEntry(item.path.as_posix(), item.label, subset, digests[item.path])
                                 for subset in SUBSETS for item in split[subset]])
    write_csv(args.duplicates, ["file", "duplicate_of", "action"], rows)
    for subset, counts in count_by_class(split).items():
        logger.info("%s: %d images (%s)", subset, sum(counts.values()),
                    ", ".join(f"{label} {count}" for label, count in counts.items()))


if __name__ == "__main__":
    run_stage(main)

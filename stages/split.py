"""Split stage: a stratified, seeded train/val/test split, keeping a source's own split.

Reads:  data/raw_index.csv (the download stage's manifest of data/raw), params.yaml ``split``
Writes: data/split.csv, the split as a manifest: every image's path, its class, its subset (train,
        val or test) and the SHA-256 of its bytes. A manifest rather than folders of links: DVC
        checks one file instead of one per image (docs/outputs.md, "Which outputs are folders");
        metrics/duplicates.csv, files whose bytes repeat another file's, or that hold the same
        picture re-encoded or resized (a perceptual hash within split.near_duplicate_bits): dropped
        (split.deduplicate: true) or, when kept, listed where they leak across splits
Run:    dvc repro split
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from imgclf.data.manifest import read_manifest, write_manifest
from imgclf.data.params import SplitParams
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
    # here, not above: the hashing workers' server process imports this script, and the split's
    # scikit-learn (0.6 s) is no use to them
    from imgclf.data.split import DUPLICATES_COLUMNS, split_index

    result = split_index(read_manifest(args.index, "download"), params)
    if result.duplicates:
        logger.warning("%d files repeat another file's bytes or picture (%s); see %s", len(result.duplicates),
                       "dropped" if params.deduplicate else "kept, and leaking across splits", args.duplicates)
    write_manifest(args.output, result.entries)
    write_csv(args.duplicates, DUPLICATES_COLUMNS, result.duplicates)
    for subset, counts in result.counts.items():
        logger.info("%s: %d images (%s)", subset, sum(counts.values()),
                    ", ".join(f"{label} {count}" for label, count in counts.items()))

if __name__ == "__main__":
    run_stage(main)

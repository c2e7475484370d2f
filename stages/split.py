"""Split stage: stratified, seeded train/val/test folders, keeping a source's own split.

Reads:  data/raw (from the download stage), params.yaml ``split``
Writes: data/split/{train,val,test}/<class>/<file>, hard links to data/raw where the filesystem
        allows (copies otherwise), so a split costs no extra disk
Run:    dvc repro split
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from imgclf.files import atomic_directory, link_or_copy
from imgclf.layout import SUBSETS, scan_folder
from imgclf.params import load_section
from imgclf.split import count_by_class, split_items
from imgclf.stage import run_stage

logger = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, required=True, help="the download stage's output")
    parser.add_argument("--output", type=Path, required=True, help="folder to write the splits to")
    args = parser.parse_args()
    params = load_section("split")

    files, _ = scan_folder(args.input)
    split = split_items(files, params.val, params.test, params.seed)
    with atomic_directory(args.output) as staging:
        for subset in SUBSETS:
            for item in split[subset]:
                link_or_copy(item.path, staging / subset / item.label / item.name)
    for subset, counts in count_by_class(split).items():
        logger.info("%s: %d images (%s)", subset, sum(counts.values()),
                    ", ".join(f"{label} {count}" for label, count in counts.items()))


if __name__ == "__main__":
    run_stage(main)

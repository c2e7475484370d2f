"""Resize stage: every image of the split to ``resize.size`` as 8-bit RGB, on all cores.

Reads:  data/split.csv (from the split stage) and the files of data/raw it lists, params.yaml ``resize``
Writes: data/resized/{train,val,test}/, each split's images in shards of about resize.shard_mb,
        written as the images come back from the workers, with their labels and source paths
        (src/imgclf/data/dataset.py; `imgclf unpack` writes one out as folders of PNGs to look at);
        data/resized/preprocessing.json, the size and resize mode, kept with the model for predictions;
        metrics/skipped_resize.csv, every file that could not be used (or was used only after a
        repair: first frame of an animation, 16-bit scaled...) and why;
        metrics/data.json (a DVC metric), the images kept and the unusable files per split;
        metrics/data/: splits.csv (per split: images kept, unusable, repaired and damaged files,
        the source images' sizes, orientations and modes) and DVC plots (class balance, source
        sizes, aspect ratios), and
        metrics/figures/resize/data.png, the same as one picture
Run:    dvc repro resize

data/raw is not a DVC dependency of this stage: the manifest holds each file's SHA-256, so it
changes whenever an image does, and a file that differs from its digest stops the stage.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from imgclf.data.manifest import read_manifest
from imgclf.data.params import ResizeParams
from imgclf.data.resizing import SPLIT_COLUMNS, resize_splits
from imgclf.data.stats import draw_data, write_tables
from imgclf.plumbing.files import atomic_directory, write_csv, write_json
from imgclf.plumbing.params import load_section
from imgclf.plumbing.stage import run_stage

logger = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", type=Path, required=True, help="the split stage's manifest")
    parser.add_argument("--output", type=Path, required=True, help="folder to write the packed splits to")
    parser.add_argument("--report", type=Path, required=True, help="CSV of the unusable files")
    parser.add_argument("--counts", type=Path, required=True, help="JSON of image counts (a DVC metric)")
    parser.add_argument("--tables", type=Path, required=True, help="folder for the data's DVC plots (CSV)")
    parser.add_argument("--figures", type=Path, required=True, help="folder for the data's PNG figure")
    args = parser.parse_args()
    params = load_section(ResizeParams)

    entries = read_manifest(args.split, "split")
    logger.info("resizing %d images to %dx%d (%s)", len(entries), *params.size, params.mode)
    with atomic_directory(args.output) as staging:
        report = resize_splits(entries, params, staging)

    write_json(args.counts, report.counts())
    with atomic_directory(args.tables) as staging:
        write_tables(staging, report.kept_per_class, report.statistics)
        write_csv(staging / "splits.csv", SPLIT_COLUMNS, report.split_rows())
    with atomic_directory(args.figures) as staging:
        draw_data(report.kept_per_class, report.statistics, staging / "data.png")
    enlarged = sum(stats.enlarged for stats in report.statistics.values())
    if enlarged:
        logger.info("%d of %d source images are smaller than %dx%d along a side and were enlarged", enlarged,
                    sum(stats.images for stats in report.statistics.values()), *params.size)
    write_csv(args.report, ["file", "action", "reason"], report.listed_rows())
    skipped = sum(report.count("skipped").values())
    if report.noteworthy:
        logger.warning("%d of %d files could not be used, %d were used after a repair or with a warning; see %s",
                       skipped, len(entries), len(report.noteworthy) - skipped, args.report)


if __name__ == "__main__":
    run_stage(main)

"""Resize stage: every image of the split to ``resize.size`` as 8-bit RGB, on all cores.

Reads:  data/split.csv (from the split stage) and the files of data/raw it lists, params.yaml ``resize``
Writes: data/resized/{train,val,test}/, each split's images in shards of about resize.shard_mb,
        written as the images come back from the workers, with their labels and source paths
        (src/imgclf/data/dataset.py; `imgclf unpack` writes one out as folders of PNGs to look at);
        data/resized/preprocessing.json, the size and resize mode, kept with the model for predictions;
        metrics/skipped_resize.csv, every file that could not be used (or was used only after a
        repair: first frame of an animation, 16-bit scaled...) and why;
        metrics/data.json, images per split and class, unusable and repaired files per split, and
        of the source images: how many were enlarged, portrait or landscape, their modes;
        metrics/data/ (DVC plots: class balance, source sizes, aspect ratios) and
        metrics/figures/resize/data.png, the same as one picture
Run:    dvc repro resize

data/raw is not a DVC dependency of this stage: the manifest holds each file's SHA-256, so it
changes whenever an image does, and a file that differs from its digest stops the stage.
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from pathlib import Path

from imgclf.data.dataset import ShardWriter
from imgclf.data.images import ResizeJob, ResizeOutcome, iter_resized
from imgclf.data.layout import SUBSETS
from imgclf.data.manifest import ManifestEntry, read_manifest
from imgclf.data.params import ResizeParams
from imgclf.data.preprocessing import PREPROCESSING_FILE, Preprocessing
from imgclf.data.stats import SourceStatistics, aspect_rows, class_balance_rows, draw_data, size_rows
from imgclf.plumbing.files import atomic_directory, write_csv, write_json
from imgclf.plumbing.params import load_section
from imgclf.plumbing.stage import run_stage

logger = logging.getLogger(__name__)


def resize_subset(entries: list[ManifestEntry], class_names: tuple[str, ...], params: ResizeParams,
                  folder: Path, description: str, statistics: SourceStatistics,
                  ) -> tuple[Counter[str], Counter[str], list[ResizeOutcome]]:
    """Write the usable images of ``entries``, at the training size, as the split folder ``folder``;
    return the images kept per class, the files per outcome (used, repaired, warning, skipped) and
    the outcomes worth listing (all but ``used``); count the source images in ``statistics``. One
    shard is in memory at a time."""
    jobs = [ResizeJob(Path(entry.file), entry.sha256) for entry in entries]
    writer = ShardWriter(folder, (*params.size, 3), class_names, int(params.shard_mb * 2**20))
    index_of = {name: index for index, name in enumerate(class_names)}
    kept: Counter[str] = Counter()
    actions: Counter[str] = Counter()
    noteworthy = []
    resized = iter_resized(jobs, params.size, params.mode, params.max_megapixels * 1e6, description=description)
    for entry, (outcome, pixels) in zip(entries, resized, strict=True):
        actions[outcome.action] += 1
        if outcome.action != "used":
            noteworthy.append(outcome)
        if pixels is not None:
            writer.add(pixels, index_of[entry.label], entry.file)  # a full disk or a read-only folder: see run_stage
            kept[entry.label] += 1
            if outcome.image is not None:
                statistics.add(outcome.image)
    writer.close()
    return kept, actions, noteworthy


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
    class_names = tuple(sorted({entry.label for entry in entries}))
    logger.info("resizing %d images to %dx%d (%s)", len(entries), *params.size, params.mode)
    actions: dict[str, Counter[str]] = {}
    noteworthy: list[ResizeOutcome] = []
    kept_per_class: dict[str, dict[str, int]] = {}
    statistics = {subset: SourceStatistics(params.size) for subset in SUBSETS}
    with atomic_directory(args.output) as staging:
        for subset in SUBSETS:
            kept, actions[subset], listed = resize_subset([entry for entry in entries if entry.subset == subset],
                                                          class_names, params, staging / subset, f"resizing {subset}",
                                                          statistics[subset])
            kept_per_class[subset] = dict(sorted(kept.items()))
            noteworthy += listed
        Preprocessing(params.size, params.mode, params.max_megapixels).save(staging / PREPROCESSING_FILE)

    def count(action: str) -> dict[str, int]:
        return {subset: actions[subset][action] for subset in SUBSETS}

    write_json(args.counts, {"images": {subset: sum(kept_per_class[subset].values()) for subset in SUBSETS},
                             "per_class": kept_per_class, "unusable": count("skipped"),
                             "repaired": count("repaired"), "damaged_but_used": count("warning"),
                             "source_images": {subset: statistics[subset].summary() for subset in SUBSETS}})
    with atomic_directory(args.tables) as staging:
        write_csv(staging / "class_balance.csv", ["split", "class", "images"], class_balance_rows(kept_per_class))
        write_csv(staging / "source_sizes.csv", ["split", "width", "height", "images"], size_rows(statistics))
        write_csv(staging / "aspect_ratios.csv", ["split", "aspect_ratio", "images"], aspect_rows(statistics))
    with atomic_directory(args.figures) as staging:
        draw_data(kept_per_class, statistics, staging / "data.png")
    enlarged = sum(stats.enlarged for stats in statistics.values())
    if enlarged:
        logger.info("%d of %d source images are smaller than %dx%d along a side and were enlarged", enlarged,
                    sum(stats.images for stats in statistics.values()), *params.size)
    write_csv(args.report, ["file", "action", "reason"],
              [(str(outcome.source), outcome.action, outcome.reason) for outcome in noteworthy])
    skipped = sum(count("skipped").values())
    if noteworthy:
        logger.warning("%d of %d files could not be used, %d were used after a repair or with a warning; see %s",
                       skipped, len(entries), len(noteworthy) - skipped, args.report)


if __name__ == "__main__":
    run_stage(main)

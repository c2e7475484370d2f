"""Resize stage: every image to ``resize.size`` as 8-bit RGB PNG, on all cores.

Reads:  data/split (from the split stage), params.yaml ``resize``
Writes: data/resized/{train,val,test}/<class>/<file>.png;
        data/resized/preprocessing.json, the size and resize mode, kept with the model for predictions;
        metrics/skipped_resize.csv, every file that could not be used (or was used only after a
        repair: first frame of an animation, 16-bit scaled...) and why;
        metrics/data.json, images per split and class, unusable and repaired files per split
Run:    dvc repro resize
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from imgclf.files import atomic_directory, write_csv, write_json
from imgclf.images import ResizeJob, output_name, resize_files
from imgclf.layout import SUBSETS, scan_folder
from imgclf.params import load_section
from imgclf.preprocessing import PREPROCESSING_FILE, Preprocessing
from imgclf.split import count_by_class
from imgclf.stage import run_stage

logger = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, required=True, help="the split stage's output")
    parser.add_argument("--output", type=Path, required=True, help="folder to write resized images to")
    parser.add_argument("--report", type=Path, required=True, help="CSV of the unusable files")
    parser.add_argument("--counts", type=Path, required=True, help="JSON of image counts (a DVC metric)")
    args = parser.parse_args()
    params = load_section("resize")

    files, _ = scan_folder(args.input)
    with atomic_directory(args.output) as staging:
        names_taken: dict[Path, set[str]] = {}
        jobs = []
        for item in files:
            folder = staging / item.subset / item.label
            name = output_name(Path(item.name), names_taken.setdefault(folder, set()))
            jobs.append(ResizeJob(item.path, folder / name))
        logger.info("resizing %d images to %dx%d (%s)", len(jobs), *params.size, params.mode)
        noteworthy = resize_files(jobs, params.size, params.mode, params.max_megapixels * 1e6)
        Preprocessing(params.size, params.mode, params.max_megapixels).save(staging / PREPROCESSING_FILE)

    action_of = {outcome.source: outcome.action for outcome in noteworthy}
    kept = {subset: [item for item in files if item.subset == subset and action_of.get(item.path) != "skipped"]
            for subset in SUBSETS}

    def count(action: str) -> dict[str, int]:
        return {subset: sum(action_of.get(item.path) == action for item in files if item.subset == subset)
                for subset in SUBSETS}

    write_json(args.counts, {"images": {subset: len(kept[subset]) for subset in SUBSETS},
                             "per_class": count_by_class(kept), "unusable": count("skipped"),
                             "repaired": count("repaired"), "damaged_but_used": count("warning")})
    write_csv(args.report, ["file", "action", "reason"],
              [(str(outcome.source), outcome.action, outcome.reason) for outcome in noteworthy])
    skipped = sum(outcome.action == "skipped" for outcome in noteworthy)
    if noteworthy:
        logger.warning("%d of %d files could not be used, %d were used after a repair or with a warning; see %s",
                       skipped, len(jobs), len(noteworthy) - skipped, args.report)


if __name__ == "__main__":
    run_stage(main)

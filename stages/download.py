"""Download stage: bring the images of ``data.source`` into one class-folder layout.

Reads:  params.yaml ``data``; for ``source: folder``, the folder ``data.path``
Writes: data/raw/<class>/<file> (or data/raw/<split>/<class>/<file> when the source has its own
        split), and metrics/skipped_download.csv listing every file not taken, with the reason
Run:    dvc repro download
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from imgclf import sources
from imgclf.files import atomic_directory, write_csv
from imgclf.params import load_section
from imgclf.stage import run_stage

logger = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, required=True, help="folder to write the images to")
    parser.add_argument("--report", type=Path, required=True, help="CSV of the files that were skipped")
    args = parser.parse_args()
    params = load_section("data")

    skipped: list[sources.SkippedFile] = []
    with atomic_directory(args.output) as staging:
        if params.source == "digits":
            sources.write_digits(staging)
        elif params.source == "folder":
            skipped = sources.import_folder(Path(params.path).expanduser(), staging)
    for item in skipped:
        logger.warning("skipped %s: %s", item.path, item.reason)
    write_csv(args.report, ["file", "reason"], [(str(item.path), item.reason) for item in skipped])


if __name__ == "__main__":
    run_stage(main)

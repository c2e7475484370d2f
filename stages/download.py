"""Download stage: bring the images of ``data.source`` into one class-folder layout.

Reads:  params.yaml ``data``; the source (a folder, a CSV, a CIFAR archive, a Kaggle archive...)
Writes: data/raw/<class>/<file> (or data/raw/<split>/<class>/<file> when the source has its own
        split); data/raw_index.csv, a manifest of every image there with its class, the source's own
        split and its SHA-256, which the split stage reads instead of walking data/raw;
        metrics/skipped_download.csv listing every file not taken, with the reason
Run:    dvc repro download
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from imgclf.data.manifest import index_folder, write_manifest
from imgclf.data.params import DataParams
from imgclf.data.sources import download_source
from imgclf.plumbing.files import atomic_directory, write_csv
from imgclf.plumbing.params import load_section
from imgclf.plumbing.stage import run_stage

logger = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, required=True, help="folder to write the images to")
    parser.add_argument("--index", type=Path, required=True, help="manifest (CSV) of the images written")
    parser.add_argument("--report", type=Path, required=True, help="CSV of the files that were skipped")
    args = parser.parse_args()
    params = load_section(DataParams)

    args.output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(args.output) as staging, \
            tempfile.TemporaryDirectory(prefix=".download-", dir=args.output.parent) as scratch:
        skipped = download_source(params, staging, Path(scratch))
    write_manifest(args.index, index_folder(args.output, args.output))
    for item in skipped:
        logger.warning("skipped %s: %s", item.path, item.reason)
    write_csv(args.report, ["file", "reason"], [(str(item.path), item.reason) for item in skipped])


if __name__ == "__main__":
    run_stage(main)

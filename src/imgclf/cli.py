"""The ``imgclf`` command: small helpers around the pipeline's outputs.

    imgclf summary     one line with the test accuracy of the last run (metrics/evaluate.json)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from imgclf.files import read_json


def summary(metrics_path: Path) -> str:
    if not metrics_path.exists():
        return f"{metrics_path} does not exist yet: run `dvc repro` first."
    metrics = read_json(metrics_path)
    return (f"test accuracy {metrics['accuracy']:.4f} (loss {metrics['loss']:.4f}, "
            f"macro F1 {metrics['macro_f1']:.4f}) on {metrics['test_images']} test images")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="imgclf", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    summary_parser = commands.add_parser("summary", help="print the test accuracy of the last run")
    summary_parser.add_argument("--metrics", type=Path, default=Path("metrics/evaluate.json"))
    args = parser.parse_args(argv)
    if args.command == "summary":
        print(summary(args.metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())

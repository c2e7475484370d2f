"""Export stage (optional): the trained model in the serving formats of ``export.formats``.

Reads:  models/ (model.keras, classes.json), data/resized/test/, params.yaml ``export``
Writes: exports/ (saved_model/, model.onnx, model.tflite: those asked for), each checked against the
        Keras model on the test images; metrics/export.json, the check of each format
Run:    dvc exp run -S 'export.formats=[onnx,tflite]'   (empty by default: nothing is exported)
        The same as `imgclf export --format onnx --format tflite`, run by DVC.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from imgclf.plumbing.files import atomic_directory, write_json
from imgclf.plumbing.params import load_section
from imgclf.plumbing.stage import run_stage
from imgclf.serving.params import ExportParams

logger = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True, help="the train stage's model folder")
    parser.add_argument("--test", type=Path, required=True, help="the test split's folder, to check on")
    parser.add_argument("--output", type=Path, required=True, help="folder for the exported models")
    parser.add_argument("--report", type=Path, required=True, help="JSON of each export's check")
    args = parser.parse_args()
    params = load_section(ExportParams)

    with atomic_directory(args.output) as staging:
        if params.formats:
            from imgclf.serving.export import export_all
            from imgclf.serving.model_folder import KERAS_FILE

            report = export_all(args.model_dir / KERAS_FILE, args.test, params.formats, staging)
        else:
            logger.info("export.formats is empty: nothing to export (e.g. dvc exp run -S 'export.formats=[onnx]')")
            report = {}
            write_json(staging / "report.json", report)  # an empty folder is a warning from DVC at every run
    write_json(args.report, report)


if __name__ == "__main__":
    run_stage(main)

"""The train stage's second command: add the checked ONNX copy to the model folder the first wrote,
unless the training process added it itself (a small model on TensorFlow: train.onnx_in_process_mb).

Reads:  models/model.keras and classes.json, data/resized/val/ (the split the copy is checked on)
Writes: models/model.onnx, which `imgclf predict` runs in ONNX Runtime without TensorFlow; where it
        cannot be made or does not match, one line says why and the stage still succeeds: the folder
        keeps model.keras, which predictions then load
Run:    by `dvc repro` after stages/train.py, as the train stage's second command (dvc.yaml). The
        conversion runs in a process of its own (imgclf.serving.export): if it runs out of memory or
        is killed, this process reports it and the trained model stays as it is.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from imgclf.modeling.params import TrainParams
from imgclf.plumbing.params import load_section
from imgclf.plumbing.stage import run_stage
from imgclf.serving.model_folder import add_onnx_copy, onnx_copy_in_training

logger = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True, help="the model folder stages/train.py wrote")
    parser.add_argument("--check", type=Path, required=True, help="the split folder the copy is checked on")
    args = parser.parse_args()
    params = load_section(TrainParams)
    if onnx_copy_in_training(args.model_dir, params.backend, params.onnx_in_process_mb):
        logger.debug("the training process made the ONNX copy of %s", args.model_dir)
        return
    add_onnx_copy(args.model_dir, args.check)


if __name__ == "__main__":
    run_stage(main)

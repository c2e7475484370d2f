"""Evaluate stage: score the trained model on the test split.

Reads:  models/model.keras, models/classes.json, data/resized/test, params.yaml ``evaluate``
Writes: metrics/evaluate.json (accuracy, loss, macro and per-class precision/recall/F1/support),
        metrics/predictions.csv (file, actual, predicted, confidence: the confusion matrix's data)
Run:    dvc repro evaluate
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from imgclf.params import load_section
from imgclf.stage import run_stage

logger = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True, help="the train stage's model folder")
    parser.add_argument("--test", type=Path, required=True, help="folder of test images by class")
    parser.add_argument("--metrics", type=Path, required=True, help="JSON of test metrics")
    parser.add_argument("--predictions", type=Path, required=True, help="CSV of per-image predictions")
    args = parser.parse_args()
    params = load_section("evaluate")

    from imgclf.dataset import load_image_folder
    from imgclf.evaluation import class_probabilities, prediction_rows, score_predictions
    from imgclf.files import read_json, write_csv, write_json
    from imgclf.modelio import load_model

    class_names = read_json(args.model_dir / "classes.json")
    model = load_model(args.model_dir / "model.keras")
    test_set = load_image_folder(args.test, class_names)
    probabilities = class_probabilities(model.predict(test_set.images, batch_size=params.batch_size, verbose=0))

    metrics = score_predictions(test_set.labels, probabilities, class_names)
    write_json(args.metrics, metrics)
    write_csv(args.predictions, ["file", "actual", "predicted", "confidence"],
              prediction_rows(test_set.files, test_set.labels, probabilities, class_names))
    logger.info("test accuracy %.4f, loss %.4f, macro F1 %.4f on %d images",
                metrics["accuracy"], metrics["loss"], metrics["macro_f1"], metrics["test_images"])


if __name__ == "__main__":
    run_stage(main)

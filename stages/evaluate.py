"""Evaluate stage: score the trained model on the test split and draw where it fails.

Reads:  models/ (model.keras, classes.json), data/resized/test/ (batch by batch), params.yaml ``evaluate``
Writes: metrics/evaluate.json (accuracy, top-k accuracy, loss, macro and weighted precision/recall/F1,
        ROC AUC, calibration error, per-class scores), metrics/predictions.csv (file, actual,
        predicted, confidence: the confusion matrix's data), metrics/roc.csv and
        metrics/precision_recall.csv (one-vs-rest curve points per class), and metrics/figures/evaluate/
        (PNG: confusion matrices, ROC and precision-recall curves, the most confident mistakes,
        sample test images per class)
Run:    dvc repro evaluate
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from imgclf.params import EvaluateParams, load_section
from imgclf.stage import run_stage

logger = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True, help="the train stage's model folder")
    parser.add_argument("--test", type=Path, required=True, help="the test split's folder")
    parser.add_argument("--metrics", type=Path, required=True, help="JSON of test metrics")
    parser.add_argument("--predictions", type=Path, required=True, help="CSV of per-image predictions")
    parser.add_argument("--roc", type=Path, required=True, help="CSV of ROC curve points")
    parser.add_argument("--precision-recall", type=Path, required=True, help="CSV of precision-recall points")
    parser.add_argument("--figures", type=Path, required=True, help="folder for the PNG figures")
    args = parser.parse_args()
    params = load_section(EvaluateParams)

    from imgclf import figures
    from imgclf.batches import predict_split
    from imgclf.dataset import open_split
    from imgclf.evaluation import (
        precision_recall_rows,
        prediction_rows,
        roc_rows,
        score_predictions,
    )
    from imgclf.files import atomic_directory, read_json, write_csv, write_json
    from imgclf.modelio import load_model

    class_names = read_json(args.model_dir / "classes.json")
    model = load_model(args.model_dir / "model.keras")
    test_set = open_split(args.test, class_names)
    probabilities = predict_split(model, test_set, params.batch_size, params.tta)  # pixels are never all in memory
    labels, predicted = test_set.labels, probabilities.argmax(axis=1)
    roc = roc_rows(labels, probabilities, class_names)
    precision_recall = precision_recall_rows(labels, probabilities, class_names)

    with atomic_directory(args.figures) as staging:
        figures.confusion_matrices(labels, predicted, class_names, staging / "confusion_matrix.png")
        figures.class_curves(roc, "false positive rate", "true positive rate", "ROC (one class vs the rest)",
                             staging / "roc.png", diagonal=True)
        figures.class_curves(precision_recall, "recall", "precision", "Precision-recall (one class vs the rest)",
                             staging / "precision_recall.png")
        figures.mistakes_gallery(test_set.read, labels, probabilities, class_names, params.mistakes,
                                 staging / "mistakes.png")
        figures.samples_grid(test_set.read, labels, probabilities, class_names, params.samples_per_class,
                             staging / "samples.png")

    metrics = score_predictions(labels, probabilities, class_names, params.top_k, params.calibration_bins)
    write_csv(args.roc, ["class", "point", "fpr", "tpr"], roc)
    write_csv(args.precision_recall, ["class", "point", "recall", "precision"], precision_recall)
    write_csv(args.predictions, ["file", "actual", "predicted", "confidence"],
              prediction_rows(test_set.files, labels, probabilities, class_names))
    write_json(args.metrics, metrics)
    logger.info("test accuracy %.4f, loss %.4f, macro F1 %.4f, ROC AUC %s, ECE %.4f on %d images",
                metrics["accuracy"], metrics["loss"], metrics["macro_f1"], metrics["roc_auc"], metrics["ece"],
                metrics["test_images"])


if __name__ == "__main__":
    run_stage(main)

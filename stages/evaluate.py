"""Evaluate stage: score the trained model on the test split and draw where it fails.

Reads:  models/ (model.onnx, run by ONNX Runtime, or where it is missing model.keras; classes.json;
        for the heatmaps, read by a process of their own while this one draws the rest: heatmaps/,
        their ONNX graphs, or where the train stage wrote none, model.keras in Keras),
        data/resized/test/ and val/ (batch by batch), params.yaml ``evaluate`` and ``train.backend``
        (that Keras' backend)
Writes: metrics/evaluate.json (the headline: accuracy, top-k accuracy, loss, macro F1, ROC AUC,
        calibration error), metrics/class_scores.csv (each class's precision, recall, F1, ROC AUC and
        support, with their macro and weighted averages), metrics/predictions.csv (file, actual,
        predicted, confidence: the confusion matrix's data), metrics/roc.csv and
        metrics/precision_recall.csv (one-vs-rest curve points per class), and metrics/figures/evaluate/
        (PNG: confusion matrices, ROC and precision-recall curves, the most confident mistakes,
        sample test images per class, both again with heatmaps of where the model looked (unless
        evaluate.heatmaps is false: then both say so), the
        images most probably mislabelled), and
        metrics/label_issues.csv (the validation and test images whose label is probably wrong, by
        cleanlab's confident learning on the model's out-of-sample probabilities)
Run:    dvc repro evaluate
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from imgclf.modeling.backend import use_backend
from imgclf.modeling.params import TrainParams
from imgclf.plumbing.params import load_section
from imgclf.plumbing.stage import collector_paused, run_stage
from imgclf.reporting.params import EvaluateParams

logger = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True, help="the train stage's model folder")
    parser.add_argument("--test", type=Path, required=True, help="the test split's folder")
    parser.add_argument("--val", type=Path, required=True, help="the validation split's folder (for label issues)")
    parser.add_argument("--metrics", type=Path, required=True, help="JSON of test metrics")
    parser.add_argument("--class-scores", type=Path, required=True, help="CSV of each class's scores")
    parser.add_argument("--predictions", type=Path, required=True, help="CSV of per-image predictions")
    parser.add_argument("--roc", type=Path, required=True, help="CSV of ROC curve points")
    parser.add_argument("--precision-recall", type=Path, required=True, help="CSV of precision-recall points")
    parser.add_argument("--figures", type=Path, required=True, help="folder for the PNG figures")
    parser.add_argument("--label-issues", type=Path, required=True, help="CSV of probably mislabelled images")
    args = parser.parse_args()
    params = load_section(EvaluateParams)
    use_backend(load_section(TrainParams).backend)  # the heatmaps' Keras, and the predictions' without model.onnx

    from imgclf.plumbing.files import atomic_directory, write_csv, write_json
    from imgclf.reporting.heatmap_galleries import HeatmapGalleries
    from imgclf.serving.heatmap_models import heatmap_graphs
    from imgclf.serving.model_folder import KERAS_FILE, ModelFolder

    class_names = ModelFolder.open(args.model_dir).class_names
    with atomic_directory(args.figures) as staging:
        # first: the heatmaps' process opens the model's heatmap graphs (or, without them, imports
        # Keras and loads the model) while this one imports the rest, predicts and draws
        with HeatmapGalleries(args.model_dir / KERAS_FILE, args.test, class_names, params, staging,
                              onnx_graphs=heatmap_graphs(args.model_dir)) as heatmaps:
            with collector_paused():  # scikit-learn, matplotlib, ONNX Runtime: 0.2 s faster
                from imgclf.data.dataset import open_split
                from imgclf.reporting.results import draw_figures, predict_splits, test_results
                from imgclf.serving.model_folder import load_classifier

            classifier = load_classifier(args.model_dir)  # ONNX Runtime where the train stage wrote model.onnx
            test_set = open_split(args.test, class_names)
            val_set = open_split(args.val, class_names)
            probabilities, val_probabilities = predict_splits(classifier.outputs, test_set, val_set, params)
            del classifier  # its session's memory, before the heatmaps' gradients take theirs
            heatmaps.draw(probabilities)
            results = test_results(test_set, probabilities, val_set, val_probabilities, class_names)
            draw_figures(results, params, staging)
            heatmaps_from = heatmaps.wait()

    from imgclf.reporting.evaluation import CLASS_SCORE_COLUMNS
    from imgclf.reporting.label_issues import CSV_COLUMNS

    metrics = results.metrics(params)
    write_csv(args.label_issues, CSV_COLUMNS, results.label_issue_rows())
    write_csv(args.class_scores, CLASS_SCORE_COLUMNS, results.class_score_rows())
    write_csv(args.roc, ["class", "point", "fpr", "tpr"], results.roc)
    write_csv(args.precision_recall, ["class", "point", "recall", "precision"], results.precision_recall)
    write_csv(args.predictions, ["file", "actual", "predicted", "confidence"], results.prediction_rows())
    write_json(args.metrics, metrics)
    logger.info("test accuracy %.4f, loss %.4f, macro F1 %.4f, ROC AUC %s, ECE %.4f on %d images",
                metrics["accuracy"], metrics["loss"], metrics["macro_f1"], metrics["roc_auc"], metrics["ece"],
                metrics["test_images"])
    logger.info("%d of %d validation and test images are probably mislabelled: %s", len(results.label_issues),
                len(val_set) + len(test_set), args.label_issues)
    if heatmaps_from is not None:
        logger.info("drew where the model looked (%s) over the mistakes and samples in %s", heatmaps_from, args.figures)


if __name__ == "__main__":
    run_stage(main)

"""The evaluate stage's results: a trained model's predictions on the test split (and, for the label
issues, on the validation split), the metrics, curves and tables made of them, and their figures.

Both splits are predicted batch by batch (:func:`imgclf.modeling.outputs.predict_split`) by whichever
engine the model folder offers (ONNX Runtime where ``model.onnx`` is there): their pixels are never
all in memory, and no Keras is loaded here. The heatmap galleries need the Keras model's gradients:
:class:`imgclf.reporting.heatmap_galleries.HeatmapGalleries` draws them in a process of its own while
this one draws the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.data.dataset import PackedSplit
from imgclf.modeling.outputs import predict_split
from imgclf.reporting import figures
from imgclf.reporting.evaluation import (
    class_score_rows,
    precision_recall_rows,
    prediction_rows,
    roc_rows,
    score_predictions,
)
from imgclf.reporting.label_issues import LabelIssue, draw_gallery, find_in_splits, issue_rows
from imgclf.reporting.params import EvaluateParams

Outputs = Callable[[np.ndarray], np.ndarray]  # a batch of images (uint8, NHWC) in, the model's outputs out


@dataclass(frozen=True)
class TestResults:
    """What a model predicted for the test split, and what follows from it."""

    class_names: Sequence[str]
    test_set: PackedSplit
    probabilities: np.ndarray  # test images x classes
    val_set: PackedSplit
    label_issues: list[LabelIssue]  # of the validation and test images, the most probable first
    roc: list[tuple[str, int, float, float]]
    precision_recall: list[tuple[str, int, float, float]]

    @property
    def labels(self) -> np.ndarray:
        return self.test_set.labels

    def metrics(self, params: EvaluateParams) -> dict[str, Any]:
        """What ``metrics/evaluate.json`` holds: the model's headline scores. (How many labels are
        probably wrong says something of the data: ``metrics/label_issues.csv`` lists them.)"""
        return score_predictions(self.labels, self.probabilities, self.class_names, params.top_k,
                                 params.calibration_bins)

    def class_score_rows(self) -> list[tuple[str, float, float, float, float | None, int]]:
        """What ``metrics/class_scores.csv`` holds: each class's scores, then their averages."""
        return class_score_rows(self.labels, self.probabilities, self.class_names)

    def prediction_rows(self) -> list[tuple[str, str, str, float]]:
        return prediction_rows(self.test_set.files, self.labels, self.probabilities, self.class_names)

    def label_issue_rows(self) -> list[tuple[str, str, str, str, float]]:
        return issue_rows(self.label_issues, self.class_names)


def predict_splits(outputs: Outputs, test_set: PackedSplit, val_set: PackedSplit,
                   params: EvaluateParams) -> tuple[np.ndarray, np.ndarray]:
    """The test and validation splits' probabilities (``evaluate.tta`` applied to both): the
    validation split's, out-of-sample as the test split's, for the label issues."""
    return (predict_split(outputs, test_set, params.batch_size, params.tta),
            predict_split(outputs, val_set, params.batch_size, params.tta))


def test_results(test_set: PackedSplit, probabilities: np.ndarray, val_set: PackedSplit,
                 val_probabilities: np.ndarray, class_names: Sequence[str]) -> TestResults:
    """Everything that follows from the splits' probabilities: the probably mislabelled images, the curves."""
    issues = find_in_splits({"val": (val_set, val_probabilities), "test": (test_set, probabilities)})
    return TestResults(class_names, test_set, probabilities, val_set, issues,
                       roc_rows(test_set.labels, probabilities, class_names),
                       precision_recall_rows(test_set.labels, probabilities, class_names))


def draw_figures(results: TestResults, params: EvaluateParams, folder: Path) -> None:
    """Every PNG of ``metrics/figures/evaluate/`` in ``folder`` but the heatmap galleries (:mod:`heatmap_galleries`)."""
    labels, probabilities, class_names = results.labels, results.probabilities, results.class_names
    test_set = results.test_set
    figures.confusion_matrices(labels, probabilities.argmax(axis=1), class_names, folder / "confusion_matrix.png")
    figures.class_curves(results.roc, "false positive rate", "true positive rate", "ROC (one class vs the rest)",
                         folder / "roc.png", diagonal=True)
    figures.class_curves(results.precision_recall, "recall", "precision", "Precision-recall (one class vs the rest)",
                         folder / "precision_recall.png")
    figures.mistakes_gallery(test_set.read, labels, probabilities, class_names, params.mistakes,
                             folder / "mistakes.png")
    figures.samples_grid(test_set.read, labels, probabilities, class_names, params.samples_per_class,
                         folder / "samples.png")
    draw_gallery(results.label_issues[:params.label_issues], {"val": results.val_set, "test": test_set},
                 class_names, folder / "label_issues.png")

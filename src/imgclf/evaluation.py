"""Test-set metrics from predicted class probabilities (pure functions over arrays).

Metric names are flat, lower-case and shared with the docs: ``accuracy``, ``loss``,
``macro_precision``..., and ``per_class.<class>.<metric>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, log_loss, precision_recall_fscore_support

DECIMALS = 6


def class_probabilities(model_output: np.ndarray) -> np.ndarray:
    """(count, classes) probabilities from a model's output; a single sigmoid column means 2 classes.

    Rows are renormalised in float64: a float32 softmax sums to 1 only within rounding.
    """
    model_output = np.asarray(model_output, dtype=np.float64)
    if model_output.ndim == 2 and model_output.shape[1] == 1:
        positive = model_output[:, 0]
        model_output = np.stack([1.0 - positive, positive], axis=1)
    return model_output / model_output.sum(axis=1, keepdims=True)


def score_predictions(labels: np.ndarray, probabilities: np.ndarray,
                 class_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, cross-entropy loss, macro and per-class precision/recall/F1/support."""
    class_indices = list(range(len(class_names)))
    predicted = probabilities.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=class_indices, zero_division=0)
    return {
        "accuracy": _round(accuracy_score(labels, predicted)),
        "loss": _round(log_loss(labels, probabilities, labels=class_indices)),
        "macro_precision": _round(precision.mean()),
        "macro_recall": _round(recall.mean()),
        "macro_f1": _round(f1.mean()),
        "test_images": int(len(labels)),
        "per_class": {
            name: {"precision": _round(precision[i]), "recall": _round(recall[i]),
                   "f1": _round(f1[i]), "support": int(support[i])}
            for i, name in enumerate(class_names)
        },
    }


def prediction_rows(files: Sequence[str], labels: np.ndarray, probabilities: np.ndarray,
                    class_names: Sequence[str]) -> list[tuple[str, str, str, float]]:
    """One row per test image: file, actual class, predicted class, confidence in the prediction."""
    predicted = probabilities.argmax(axis=1)
    return [(file, class_names[actual], class_names[guess], _round(probabilities[row, guess]))
            for row, (file, actual, guess) in enumerate(zip(files, labels, predicted, strict=True))]


def _round(value: float) -> float:
    return round(float(value), DECIMALS)

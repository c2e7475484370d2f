"""Test-set metrics and curve data from predicted class probabilities (pure functions over arrays).

``metrics/evaluate.json`` holds the headline figures only, with flat, short, lower-case names
shared with the docs, so that ``dvc exp show`` and ``dvc metrics diff`` fit a terminal:
``accuracy``, ``top_5_accuracy``, ``loss``, ``macro_f1``, ``roc_auc``, ``ece``, ``test_images``.
Every class's precision, recall, F1, ROC AUC and support, with their macro and weighted averages,
are rows of ``metrics/class_scores.csv`` (:func:`class_score_rows`): a table that ``dvc plots``
draws, which grows with the classes where a metrics file would grow ``dvc exp show`` by five
columns per class.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

# scikit-learn's metrics are imported where they are used: its import takes about a second, and the
# heatmap galleries' process (reporting/heatmaps.py) needs only this module's image choosers

DECIMALS = 6  # the tables and curves
# metrics/evaluate.json: a resolution of one image in 10,000, and `dvc exp show` columns that fit a
# 120-column terminal (DVC prints 5 significant digits: 0.014138 where 0.0141 is as much as matters)
HEADLINE_DECIMALS = 4
# Curves in metrics/ are tracked by git and drawn by a browser: at most this many points per class.
MAX_CURVE_POINTS = 200


def score_predictions(labels: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str],
                      top_k: int = 5, calibration_bins: int = 15) -> dict[str, Any]:
    """The headline test metrics of the evaluate stage, as one JSON-ready mapping.

    ``top_<k>_accuracy`` is only reported with more than ``top_k`` classes (with fewer it is 1).
    ``roc_auc`` is the area for the second class with two classes and the macro mean of one-vs-rest
    areas with more, over the classes that have both positive and negative test images (``None``
    when none has). ``ece`` is the expected calibration error over ``calibration_bins`` bins.
    """
    from sklearn.metrics import accuracy_score, log_loss

    predicted = probabilities.argmax(axis=1)
    _, _, f1, _ = _per_class_scores(labels, predicted, len(class_names))
    metrics: dict[str, Any] = {
        "accuracy": _round(accuracy_score(labels, predicted)),
        "loss": _round(log_loss(labels, probabilities, labels=list(range(len(class_names))))),
        "macro_f1": _round(f1.mean()),
        "roc_auc": _roc_auc_summary(one_vs_rest_auc(labels, probabilities), len(class_names)),
        "ece": _round(expected_calibration_error(labels, probabilities, calibration_bins)),
        "test_images": int(len(labels)),
    }
    if len(class_names) > top_k:
        metrics[f"top_{top_k}_accuracy"] = _round(top_k_accuracy(labels, probabilities, top_k))
    return {key: round(value, HEADLINE_DECIMALS) if isinstance(value, float) else value
            for key, value in metrics.items()}


CLASS_SCORE_COLUMNS = ["class", "precision", "recall", "f1", "roc_auc", "support"]
AVERAGES = ("macro average", "weighted average")  # the last two rows: by class, and by the classes' support


def class_score_rows(labels: np.ndarray, probabilities: np.ndarray,
                     class_names: Sequence[str]) -> list[tuple[str, float, float, float, float | None, int]]:
    """The rows of ``metrics/class_scores.csv`` (:data:`CLASS_SCORE_COLUMNS`): each class's scores,
    one-vs-rest ROC AUC (empty for a class absent from the test split or alone in it), and the
    macro and weighted averages (weighted by support, as scikit-learn's ``average="weighted"``)."""
    precision, recall, f1, support = _per_class_scores(labels, probabilities.argmax(axis=1), len(class_names))
    class_auc = one_vs_rest_auc(labels, probabilities)
    rows = [(name, _round(precision[i]), _round(recall[i]), _round(f1[i]), _round_or_none(class_auc[i]),
             int(support[i])) for i, name in enumerate(class_names)]
    weights = support / max(support.sum(), 1)
    rows.append((AVERAGES[0], _round(precision.mean()), _round(recall.mean()), _round(f1.mean()),
                 _roc_auc_summary(class_auc, len(class_names)), int(support.sum())))
    rows.append((AVERAGES[1], _round(precision @ weights), _round(recall @ weights), _round(f1 @ weights), None,
                 int(support.sum())))
    return rows


def _per_class_scores(labels: np.ndarray, predicted: np.ndarray,
                      class_count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, F1 and support of each class (0 where a class is never predicted or absent)."""
    from sklearn.metrics import precision_recall_fscore_support

    return precision_recall_fscore_support(labels, predicted, labels=list(range(class_count)), zero_division=0)


def top_k_accuracy(labels: np.ndarray, probabilities: np.ndarray, k: int) -> float:
    """Share of images whose true class is among the ``k`` most probable (ties go to the lower index)."""
    ranked = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(ranked == labels[:, None], axis=1)))


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int) -> float:
    """Mean gap between confidence and accuracy, over ``bins`` equal-width confidence bins.

    Each bin's gap |accuracy - mean confidence| is weighted by its share of the images. A bin holds
    the confidences in (lower, upper]; the first also holds 0.
    """
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which_bin = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    error = 0.0
    for index in range(bins):
        members = which_bin == index
        if members.any():
            error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)


def one_vs_rest_auc(labels: np.ndarray, probabilities: np.ndarray) -> list[float | None]:
    """Per-class ROC AUC of "this class" against the rest; ``None`` for a class absent or alone."""
    from sklearn.metrics import roc_auc_score

    areas: list[float | None] = []
    for index in range(probabilities.shape[1]):
        positives = labels == index
        if positives.all() or not positives.any():
            areas.append(None)
        else:
            areas.append(float(roc_auc_score(positives, probabilities[:, index])))
    return areas


def _roc_auc_summary(class_auc: list[float | None], class_count: int) -> float | None:
    if class_count == 2:
        return _round_or_none(class_auc[1])
    defined = [area for area in class_auc if area is not None]
    return _round(float(np.mean(defined))) if defined else None


def curve_classes(class_names: Sequence[str]) -> list[int]:
    """Which classes get a curve: the positive (second) class of two, else every class."""
    return [1] if len(class_names) == 2 else list(range(len(class_names)))


def roc_rows(labels: np.ndarray, probabilities: np.ndarray,
             class_names: Sequence[str]) -> list[tuple[str, int, float, float]]:
    """(class, point, false positive rate, true positive rate) along each class's one-vs-rest ROC curve.

    ``point`` numbers the points of one curve in drawing order (a chart joins them in that order).
    """
    from sklearn.metrics import roc_curve

    def curve(positives: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fpr, tpr, _ = roc_curve(positives, scores)
        return fpr, tpr

    return _curve_rows(labels, probabilities, class_names, curve, needs_negatives=True)


def precision_recall_rows(labels: np.ndarray, probabilities: np.ndarray,
                          class_names: Sequence[str]) -> list[tuple[str, int, float, float]]:
    """(class, point, recall, precision) along each class's one-vs-rest precision-recall curve."""
    from sklearn.metrics import precision_recall_curve

    def curve(positives: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        precision, recall, _ = precision_recall_curve(positives, scores)
        return recall[::-1], precision[::-1]  # from low to full recall

    return _curve_rows(labels, probabilities, class_names, curve, needs_negatives=False)


def _curve_rows(labels: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str],
                curve: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
                needs_negatives: bool) -> list[tuple[str, int, float, float]]:
    """``curve`` of each class of :func:`curve_classes` against the rest, thinned, as (class, point, x, y).

    A class without test images gets no curve, nor, when ``needs_negatives``, one that has them all.
    """
    rows: list[tuple[str, int, float, float]] = []
    for index in curve_classes(class_names):
        positives = labels == index
        if not positives.any() or (needs_negatives and positives.all()):
            continue
        x, y = curve(positives, probabilities[:, index])
        rows.extend((class_names[index], point, _round(px), _round(py)) for point, (px, py) in enumerate(_thin(x, y)))
    return rows


def _thin(x: np.ndarray, y: np.ndarray) -> list[tuple[float, float]]:
    """At most MAX_CURVE_POINTS evenly spaced points of a curve, its two ends always kept."""
    if len(x) > MAX_CURVE_POINTS:
        keep = np.unique(np.linspace(0, len(x) - 1, MAX_CURVE_POINTS).round().astype(int))
        x, y = x[keep], y[keep]
    return list(zip(x.tolist(), y.tolist(), strict=True))


def most_confident_mistakes(labels: np.ndarray, probabilities: np.ndarray, count: int) -> list[int]:
    """Indices of up to ``count`` wrongly classified images, the most confident first (ties by index)."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probabilities[wrong, predicted[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")][:count].tolist()


def samples_per_class(labels: np.ndarray, class_count: int, count: int) -> list[list[int]]:
    """The first ``count`` image indices of each class, in file order (the same images every run)."""
    return [np.flatnonzero(labels == index)[:count].tolist() for index in range(class_count)]


def prediction_rows(files: Sequence[str], labels: np.ndarray, probabilities: np.ndarray,
                    class_names: Sequence[str]) -> list[tuple[str, str, str, float]]:
    """One row per test image: file, actual class, predicted class, confidence in the prediction."""
    predicted = probabilities.argmax(axis=1)
    return [(file, class_names[actual], class_names[guess], _round(probabilities[row, guess]))
            for row, (file, actual, guess) in enumerate(zip(files, labels, predicted, strict=True))]


def _round(value: float) -> float:
    return round(float(value), DECIMALS)


def _round_or_none(value: float | None) -> float | None:
    return None if value is None else _round(value)

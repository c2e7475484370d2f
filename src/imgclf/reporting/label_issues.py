"""Probably mislabelled images: cleanlab's confident learning on the evaluate stage's predictions.

The validation and test images were never trained on, so the model's probabilities for them are
out-of-sample, which is what confident learning (Northcutt et al., "Confident Learning: Estimating
Uncertainty in Dataset Labels", 2021) needs: per class, it estimates how often a given label
co-occurs with another true class, and flags the images whose label disagrees with a confident
prediction at that rate. They are ranked by their label quality (the probability the model gives
their label: low first), the score cleanlab's ``find_label_issues`` ranks by with ``self_confidence``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgclf.data.dataset import PackedSplit
from imgclf.reporting.figures import image_grid

logger = logging.getLogger(__name__)

CSV_COLUMNS = ("file", "split", "given_label", "suggested_label", "label_quality")


@dataclass(frozen=True)
class LabelIssue:
    """An image whose label is probably wrong, and the class the model suggests instead."""

    file: str
    split: str
    row: int  # the image's row in its split
    given: int
    suggested: int
    label_quality: float  # the model's probability of the given label: the lower, the likelier wrong


def find_label_issues(labels: np.ndarray, probabilities: np.ndarray, files: Sequence[str],
                      places: Sequence[tuple[str, int]]) -> list[LabelIssue]:
    """The images whose label is probably wrong, the likeliest first.

    ``probabilities`` must be out-of-sample (images the model was not trained on). Returns no issue,
    with a warning in the log, where there are too few images per class for cleanlab's estimate.
    """
    from cleanlab.filter import find_label_issues as confident_learning
    from cleanlab.rank import get_label_quality_scores

    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)  # exact sums, as cleanlab checks
    present = np.unique(labels)
    if len(present) < 2 or len(labels) < 2 * len(present):
        logger.warning("label issues: too few validation and test images per class to estimate them; none listed")
        return []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # n_jobs=1: cleanlab's default forks worker processes, and a fork of a process running
            # JAX's or TensorFlow's threads can deadlock (JAX warns so); one core does it in a second
            ranked = confident_learning(labels, probabilities, return_indices_ranked_by="self_confidence", n_jobs=1)
        except ValueError as error:
            logger.warning("label issues: cleanlab could not estimate them (%s); none listed", error)
            return []
    for warning in caught:
        logger.info("label issues: cleanlab says: %s", warning.message)
    quality = get_label_quality_scores(labels, probabilities, method="self_confidence")
    return [LabelIssue(files[index], places[index][0], places[index][1], int(labels[index]),
                       int(probabilities[index].argmax()), round(float(quality[index]), 6)) for index in ranked]


def find_in_splits(predicted: Mapping[str, tuple[PackedSplit, np.ndarray]]) -> list[LabelIssue]:
    """:func:`find_label_issues` over several splits at once: ``{"val": (split, probabilities), ...}``."""
    return find_label_issues(np.concatenate([split.labels for split, _ in predicted.values()]),
                             np.concatenate([probabilities for _, probabilities in predicted.values()]),
                             [file for split, _ in predicted.values() for file in split.files],
                             [(name, row) for name, (split, _) in predicted.items() for row in range(len(split))])


def issue_images(issues: Sequence[LabelIssue], splits: Mapping[str, PackedSplit]) -> list[np.ndarray]:
    """The pixels of each issue's image, read from its split."""
    return [splits[issue.split].read(np.array([issue.row]))[0] for issue in issues]


def draw_gallery(issues: Sequence[LabelIssue], splits: Mapping[str, PackedSplit], class_names: Sequence[str],
                 path: Path) -> None:
    """The images whose label is most probably wrong: the label they have, and the class the model sees."""
    image_grid(issue_images(issues, splits),
               [f"labelled {class_names[issue.given]}\nlooks {class_names[issue.suggested]} ({issue.label_quality:.2f})"
                for issue in issues],
               f"The {len(issues)} validation and test images most probably mislabelled: label, suggested class "
               "(label quality)", path, caption_colors=["darkorange"] * len(issues))


def issue_rows(issues: Sequence[LabelIssue], class_names: Sequence[str]) -> list[tuple[str, str, str, str, float]]:
    """Rows of ``metrics/label_issues.csv`` (:data:`CSV_COLUMNS`)."""
    return [(issue.file, issue.split, class_names[issue.given], class_names[issue.suggested], issue.label_quality)
            for issue in issues]

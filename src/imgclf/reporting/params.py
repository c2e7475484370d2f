"""The ``evaluate`` section of params.yaml (the evaluate stage); parsed by :mod:`imgclf.plumbing.params`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from imgclf.modeling.outputs import TTA_MODES
from imgclf.plumbing.params import Section, require_positive

if TYPE_CHECKING:  # the type checker sees a string; params.yaml's allowed values are TTA_MODES
    TtaName = str
else:
    TtaName = Literal[TTA_MODES]


@dataclass(frozen=True)
class EvaluateParams(Section):
    """The evaluate stage (``evaluate``)."""

    key = "evaluate"

    batch_size: int = 32  # the activations of one batch: at 224x224, 128 images took the stage past 3 GB
    top_k: int = 5  # top_<k>_accuracy, reported when there are more than k classes
    calibration_bins: int = 15  # equal-width confidence bins of the expected calibration error
    mistakes: int = 24  # images in the gallery of the most confident mistakes
    samples_per_class: int = 8  # test images per class in the samples grid
    label_issues: int = 24  # probably mislabelled images in their gallery (metrics/label_issues.csv lists all)
    tta: TtaName = "none"  # test-time augmentation: flip averages each image with its mirror
    heatmaps: bool = True  # the two heatmap galleries: a process that imports Keras for the gradients

    def validate(self, section: str) -> None:
        for key in ("batch_size", "top_k", "calibration_bins", "mistakes", "samples_per_class", "label_issues"):
            require_positive(f"{section}.{key}", getattr(self, key))


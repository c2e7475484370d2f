"""Every section of params.yaml, each from the package that reads it (``imgclf recipe`` checks them all)."""

from __future__ import annotations

from imgclf.data.params import DataParams, ResizeParams, SplitParams
from imgclf.modeling.params import TrainParams
from imgclf.plumbing.params import Section
from imgclf.reporting.params import EvaluateParams
from imgclf.serving.params import ExportParams

SECTIONS: dict[str, type[Section]] = {
    section.key: section
    for section in (DataParams, SplitParams, ResizeParams, TrainParams, EvaluateParams, ExportParams)
    if section.key is not None
}

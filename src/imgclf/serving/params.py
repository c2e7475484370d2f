"""The ``export`` section of params.yaml (the optional export stage); parsed by :mod:`imgclf.plumbing.params`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from imgclf.plumbing.params import Section, fail
from imgclf.serving.export import FORMATS

if TYPE_CHECKING:  # the type checker sees strings; params.yaml's allowed values are the formats' names
    ExportFormat = str
else:
    ExportFormat = Literal[FORMATS]


@dataclass(frozen=True)
class ExportParams(Section):
    """The optional export stage (``export``): which serving formats to write and check."""

    key = "export"

    formats: tuple[ExportFormat, ...] = ()  # any of saved_model, onnx, tflite; empty: export nothing

    def validate(self, section: str) -> None:
        if len(set(self.formats)) != len(self.formats):
            fail(f"{section}.formats", list(self.formats), "name each format once")


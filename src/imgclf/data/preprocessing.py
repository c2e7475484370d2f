"""The record of how the resize stage prepared images, kept beside the model for `imgclf predict`.

A module of its own so that the train stage, which copies the record, does not depend on the
resize code itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from imgclf.plumbing.errors import PipelineError
from imgclf.plumbing.files import read_json, write_json

# Written beside the resized images (data/resized/); the model folder keeps a copy under its own name
# (imgclf.serving.model_folder.PREPROCESSING_FILE).
PREPROCESSING_FILE = "preprocessing.json"


@dataclass(frozen=True)
class Preprocessing:
    """How the resize stage turned a file into model input (resize.size, resize.mode, resize.max_megapixels)."""

    size: tuple[int, int]  # (height, width)
    mode: str
    max_megapixels: float

    def save(self, path: Path) -> None:
        write_json(path, {"size": list(self.size), "mode": self.mode, "max_megapixels": self.max_megapixels})

    @classmethod
    def load(cls, path: Path) -> Preprocessing:
        if not Path(path).is_file():
            raise PipelineError(f"{path} is missing: it records how images were resized for this model. "
                                "Rerun the pipeline (dvc repro) to make it.")
        values = read_json(path)
        return cls(size=tuple(values["size"]), mode=values["mode"], max_megapixels=values["max_megapixels"])

"""Saving and loading ``.keras`` model files: reproducibly, and only in Keras' safe mode.

Keras stamps each save with the date (``metadata.json``'s ``date_saved``, and the time of the
weights entry in the zip) and with memory addresses (``shared_object_id`` in ``config.json`` is a
Python ``id()``), so two saves of the same weights differ byte for byte and DVC would record a new
hash for an unchanged model. :func:`save_model` writes the same bytes for the same model.
:func:`load_model` refuses files that would run code while loading (a ``Lambda`` layer).
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import keras

# registered layers, schedules and losses, so that models using them load in safe mode
import imgclf.modeling.augment  # noqa: F401
import imgclf.modeling.backbones  # noqa: F401
import imgclf.modeling.batch_norm  # noqa: F401
import imgclf.modeling.gelu  # noqa: F401
import imgclf.modeling.optim  # noqa: F401
from imgclf.plumbing.errors import PipelineError

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold


class UnsafeModelError(PipelineError):
    """A model file that would execute code when loaded."""


def save_model(model: keras.Model, path: Path) -> None:
    """Save ``model`` as a ``.keras`` file whose bytes depend only on the model, not on the time."""
    with tempfile.TemporaryDirectory(dir=Path(path).parent) as scratch:
        stamped = Path(scratch) / "model.keras"
        model.save(stamped)
        with zipfile.ZipFile(stamped) as source, zipfile.ZipFile(path, "w") as target:
            for entry in source.infolist():
                content = source.read(entry)
                if entry.filename == "metadata.json":
                    metadata = json.loads(content)
                    metadata.pop("date_saved", None)
                    content = json.dumps(metadata, sort_keys=True).encode()
                elif entry.filename == "config.json":
                    content = json.dumps(_renumber_shared_objects(json.loads(content), {})).encode()
                fixed = zipfile.ZipInfo(entry.filename, date_time=ZIP_EPOCH)
                fixed.compress_type = entry.compress_type
                fixed.external_attr = entry.external_attr
                target.writestr(fixed, content)


def _renumber_shared_objects(node: Any, numbers: dict[int, int]) -> Any:
    """Replace each ``shared_object_id`` (a memory address) by its order of first appearance.

    Keras only compares these ids with each other inside one file, so the renumbering keeps which
    objects are shared.
    """
    if isinstance(node, dict):
        return {key: numbers.setdefault(value, len(numbers)) if key == "shared_object_id"
                else _renumber_shared_objects(value, numbers) for key, value in node.items()}
    if isinstance(node, list):
        return [_renumber_shared_objects(item, numbers) for item in node]
    return node


def load_model(path: Path) -> keras.Model:
    """Load a ``.keras`` file in safe mode; a file with embedded code is refused with a message."""
    if not Path(path).is_file():
        raise PipelineError(f"no model at {path}: train one first (dvc repro).")
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except ValueError as error:
        if "safe_mode" not in str(error):
            raise
        raise UnsafeModelError(
            f"refused to load {path}: it holds Python code that would run while loading (a Lambda layer), "
            "and models are only loaded in Keras' safe mode. Use a model trained by this pipeline, or "
            "rebuild the model without Lambda layers (custom layers with get_config() load safely)."
        ) from None

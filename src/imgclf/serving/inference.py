"""Classify new image files with a trained model, prepared exactly as the pipeline prepared its images.

The resize stage records how it prepared images (``preprocessing.json``: size, resize mode, pixel
limit); the train stage stores that record beside the model. Prediction reads it from the model's
folder, never from today's ``params.yaml``, so a model keeps working after the params change.

Two engines run the model (:func:`imgclf.serving.model_folder.load_classifier` opens it), with the
same answers (to the export check's tolerance, 1e-4):

- ``onnx``: ``models/model.onnx``, which the train stage writes beside ``model.keras`` once it has
  checked it against the Keras model on the validation split, run by ONNX Runtime. Neither Keras nor
  TensorFlow is imported, so a prediction starts in about a second, not the ten that importing
  TensorFlow takes (``imgclf predict --verbose`` prints where the time went).
- ``keras``: ``models/model.keras`` in Keras, on any backend. ``auto`` takes ``onnx`` when the file
  is there and ONNX Runtime is installed, else this.

Nothing here imports Keras at module level.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from imgclf.data.images import UnusableImageError, decode_rgb, fit_to_size, unusable_image_errors
from imgclf.data.preprocessing import Preprocessing
from imgclf.modeling.outputs import class_probabilities, with_test_time_augmentation
from imgclf.serving.model_folder import Classifier

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """The ``top`` classes of one file, most probable first: (class name, probability)."""

    file: str
    top: list[tuple[str, float]]

    def describe(self, decimals: int = 2) -> str:
        """E.g. ``dog 0.97, cat 0.03``."""
        return ", ".join(f"{name} {probability:.{decimals}f}" for name, probability in self.top)


@dataclass(frozen=True)
class Unreadable:
    file: str
    reason: str


CSV_COLUMNS = ("file", "predicted", "confidence", "top_classes", "error")


def csv_rows(predictions: Sequence[Prediction], unreadable: Sequence[Unreadable]) -> list[tuple[str, ...]]:
    """Rows under CSV_COLUMNS, sorted by file: a prediction leaves ``error`` empty, a failure the rest."""
    rows = [(prediction.file, prediction.top[0][0], f"{prediction.top[0][1]:.6f}",
             prediction.describe(decimals=6).replace(", ", "; "), "") for prediction in predictions]
    rows += [(failure.file, "", "", "", failure.reason) for failure in unreadable]
    return sorted(rows)


def image_files(paths: Sequence[Path]) -> Iterator[Path]:
    """The files named, and every file under the folders named (sorted; hidden files left out)."""
    for path in paths:
        if path.is_dir():
            yield from sorted(found for found in path.rglob("*") if found.is_file()
                              and not any(part.startswith(".") for part in found.relative_to(path).parts))
        else:
            yield path


def prepare(path: Path, preprocessing: Preprocessing) -> np.ndarray:
    """One file as the model's input: decoded, upright, RGB, resized as the pipeline resized it.

    Raises :class:`UnusableImageError` for a file that is no usable image, :class:`OSError` for
    one that cannot be read.
    """
    data = Path(path).read_bytes()
    with unusable_image_errors():
        decoded = decode_rgb(data, preprocessing.max_megapixels * 1e6, preprocessing.size, preprocessing.mode)
        return np.asarray(fit_to_size(decoded.image, preprocessing.size, preprocessing.mode))


@dataclass
class PredictionTimes:
    """Where a prediction's seconds went, for ``imgclf predict --verbose``."""

    reading: float = 0.0  # reading, decoding and resizing the files
    predicting: float = 0.0  # the model's forward passes
    per_call: list[float] = field(default_factory=list)


def predict_files(classifier: Classifier, class_names: Sequence[str], preprocessing: Preprocessing,
                  files: Iterable[Path], top_k: int = 3, batch_size: int = 64, tta: str = "none",
                  times: PredictionTimes | None = None) -> tuple[list[Prediction], list[Unreadable]]:
    """Classify every readable file; list the others with the reason, without stopping.

    ``tta`` is the evaluate stage's test-time augmentation (``flip``: each image's output averaged
    with its mirror's), so that predictions can match the evaluated model. ``times``, when given,
    collects the seconds spent reading and predicting.
    """
    times = times if times is not None else PredictionTimes()
    predictions: list[Prediction] = []
    unreadable: list[Unreadable] = []
    batch: list[np.ndarray] = []
    batch_files: list[str] = []

    def flush() -> None:
        start = time.perf_counter()
        probabilities = class_probabilities(with_test_time_augmentation(classifier.outputs, np.stack(batch), tta))
        times.per_call.append(time.perf_counter() - start)
        times.predicting += times.per_call[-1]
        for file, row in zip(batch_files, probabilities, strict=True):
            ranked = np.argsort(-row, kind="stable")[:top_k]
            predictions.append(Prediction(file, [(class_names[i], float(row[i])) for i in ranked]))
        batch.clear()
        batch_files.clear()

    for path in tqdm(list(files), desc="predicting", unit="image", disable=None):
        start = time.perf_counter()
        try:
            batch.append(prepare(path, preprocessing))
        except FileNotFoundError:
            unreadable.append(Unreadable(str(path), "no such file"))
            continue
        except UnusableImageError as error:
            unreadable.append(Unreadable(str(path), str(error)))
            continue
        except OSError as error:  # a file that cannot be read (permissions, an I/O error)
            unreadable.append(Unreadable(str(path), f"{type(error).__name__}: {error}"))
            continue
        finally:
            times.reading += time.perf_counter() - start
        batch_files.append(str(path))
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    return predictions, unreadable


def explain_files(model: Any, files: Sequence[Path], class_names: Sequence[str], chosen: Sequence[str],
                  preprocessing: Preprocessing, folder: Path) -> list[Path]:
    """``imgclf predict --explain``: for each file, ``folder/<name>.heatmap.png``, the image as the
    model saw it with where it found its class ``chosen`` laid over it."""
    from imgclf.reporting.explain import ExplainError, explainer
    from imgclf.reporting.figures import image_grid, overlay

    images = np.stack([prepare(file, preprocessing) for file in files])
    heatmaps, reason = explainer(model, images[:4])
    if heatmaps is None:
        raise ExplainError(f"--explain: {reason}")
    classes = [class_names.index(name) for name in chosen]
    written: list[Path] = []
    taken: set[str] = set()
    for file, image, heat, name in zip(files, images, heatmaps(images, classes), chosen, strict=True):
        stem = Path(file).stem
        number = 1
        while f"{stem}.heatmap.png" in taken:  # photos of the same name from different folders
            number += 1
            stem = f"{Path(file).stem}-{number}"
        taken.add(f"{stem}.heatmap.png")
        path = folder / f"{stem}.heatmap.png"
        image_grid([overlay(image, heat)], [f"{name}" if heat is not None else f"{name} (no evidence found)"],
                   f"{Path(file).name}: where the model saw {name}", path, columns=1)
        written.append(path)
    return written

"""Classify new image files with a trained model, prepared exactly as the pipeline prepared its images.

The resize stage records how it prepared images (``preprocessing.json``: size, resize mode, pixel
limit); the train stage stores that record beside the model. Prediction reads it from the model's
folder, never from today's ``params.yaml``, so a model keeps working after the params change.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from imgclf.evaluation import predict_probabilities
from imgclf.images import UnusableImageError, decode_rgb, fit_to_size, unusable_image_errors
from imgclf.preprocessing import Preprocessing

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


def predict_files(model: keras.Model, class_names: Sequence[str], preprocessing: Preprocessing,
                  files: Iterable[Path], top_k: int = 3, batch_size: int = 64, tta: str = "none"
                  ) -> tuple[list[Prediction], list[Unreadable]]:
    """Classify every readable file; list the others with the reason, without stopping.

    ``tta`` is the evaluate stage's test-time augmentation (``flip``: each image's output averaged
    with its mirror's), so that predictions can match the evaluated model.
    """
    predictions: list[Prediction] = []
    unreadable: list[Unreadable] = []
    batch: list[np.ndarray] = []
    batch_files: list[str] = []

    def flush() -> None:
        probabilities = predict_probabilities(model, np.stack(batch), len(batch), tta)
        for file, row in zip(batch_files, probabilities, strict=True):
            ranked = np.argsort(-row, kind="stable")[:top_k]
            predictions.append(Prediction(file, [(class_names[i], float(row[i])) for i in ranked]))
        batch.clear()
        batch_files.clear()

    for path in tqdm(list(files), desc="predicting", unit="image", disable=None):
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
        batch_files.append(str(path))
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    return predictions, unreadable

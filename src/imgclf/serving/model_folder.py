"""The model folder (``models/``): every file in it, how it is written, and how it is opened.

What the train stage leaves for ``imgclf predict``, the evaluate and export stages and
``dvc artifacts get image-classifier``:

==========================  ==========================================================================
``model.keras``             the best epoch's model (:func:`imgclf.modeling.modelio.save_model`)
``classes.json``            the class names, by output index
``preprocessing.json``      how the resize stage prepared the images (:class:`Preprocessing`)
``summary.txt``             the model card: layers and parameter counts
``model.onnx``              the same model for ONNX Runtime, checked against it on the validation
                            split; written after the rest (by the training process for a small
                            model, else in a process of its own), and missing (with a log line that
                            says why) where it could not be made
``heatmaps/``               the evaluate stage's heatmaps as two ONNX graphs, so that it needs no
                            TensorFlow (:mod:`imgclf.serving.heatmap_models`): written with the ONNX
                            copy by the training process, where they give Keras' own heatmaps
==========================  ==========================================================================

:func:`write_model_folder` writes all but the ONNX copy, :func:`add_onnx_copy` adds that, and
:func:`load_classifier` opens the folder with the engine ``imgclf predict`` chose. Nothing here
imports Keras or TensorFlow at module level: predicting with ONNX Runtime never loads them.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np

from imgclf.data.preprocessing import Preprocessing
from imgclf.plumbing.errors import PipelineError
from imgclf.plumbing.files import read_json, write_json
from imgclf.plumbing.onnx_runtime import onnx_session
from imgclf.serving.export import SERVING_FORMATS, ExportCheck, ExportError, export_in_own_process

if TYPE_CHECKING:
    import keras

logger = logging.getLogger(__name__)

KERAS_FILE = "model.keras"
ONNX_FILE = SERVING_FORMATS["onnx"].output_name  # the name imgclf export gives it too
CLASSES_FILE = "classes.json"
PREPROCESSING_FILE = "preprocessing.json"
SUMMARY_FILE = "summary.txt"

Engine = Literal["auto", "onnx", "keras"]


def write_model_folder(model: keras.Model, folder: Path, class_names: Sequence[str],
                       preprocessing: Preprocessing) -> None:
    """Everything but the ONNX copy: ``model.keras`` first, so that a later failure cannot lose it.

    The card is an optional step: where it cannot be written the log says so and the folder is still whole.
    """
    from imgclf.modeling.modelcard import layer_summary
    from imgclf.modeling.modelio import save_model
    from imgclf.plumbing.stage import optional_step

    save_model(model, folder / KERAS_FILE)
    write_json(folder / CLASSES_FILE, list(class_names))
    preprocessing.save(folder / PREPROCESSING_FILE)
    with optional_step(f"{folder / SUMMARY_FILE} (the model card)"):
        (folder / SUMMARY_FILE).write_text(layer_summary(model), encoding="utf-8")


def onnx_copy_in_training(folder: Path, backend: str, in_process_mb: float) -> bool:
    """Whether the training process itself adds the ONNX copy to ``folder`` (``train.onnx_in_process_mb``):
    on the TensorFlow backend, for a model of at most ``in_process_mb`` MiB of weights.

    There TensorFlow and the model are loaded already, which a process of its own spends about 6 s
    on; the conversion keeps protobuf's C implementation, whose ~24 passes each hold a copy of the
    weights until the end (measured pass by pass: :mod:`imgclf.serving.onnx_conversion`), so 8 MiB
    of weights may cost about 200 MiB more. A larger model goes to a process of its own, whose death
    loses no training.
    """
    return backend == "tensorflow" and weight_bytes(folder / KERAS_FILE) <= in_process_mb * 2**20


def weight_bytes(keras_file: Path) -> int:
    """The size of the weights a ``.keras`` file holds (its ``model.weights.h5``), read from the zip's directory."""
    with zipfile.ZipFile(keras_file) as archive:
        return sum(entry.file_size for entry in archive.infolist() if entry.filename.endswith(".weights.h5"))


def add_onnx_copy(folder: Path, check_split: Path, model: keras.Model | None = None) -> ExportCheck | None:
    """Add ``model.onnx`` to a written model folder, checked against the Keras model on the split
    folder ``check_split``: converted from ``model``, the folder's model in memory, in this process;
    without it, from ``model.keras`` in a process of its own
    (:func:`imgclf.serving.export.export_in_own_process`).

    Where it cannot be made (a layer the converter lacks, no TensorFlow, out of memory, killed), one
    line says what is missing and why, and None is returned: the folder keeps ``model.keras``, which
    ``imgclf predict`` and the evaluate stage then load instead.
    """
    try:
        if model is None:
            return export_in_own_process(folder / KERAS_FILE, "onnx", folder, check_split)
        return _export_in_this_process(model, folder, check_split)
    except ExportError as error:
        logger.warning("no %s: %s; imgclf predict will load %s instead, which starts slower",
                       folder / ONNX_FILE, error, KERAS_FILE)
        return None


def _export_in_this_process(model: keras.Model, folder: Path, check_split: Path) -> ExportCheck:
    """:func:`imgclf.serving.export.export_model` to ONNX, any failure of the converter an :class:`ExportError`."""
    from imgclf.data.dataset import open_split
    from imgclf.serving.export import export_model

    with open_split(check_split) as split:  # the check compares outputs: its labels play no part
        try:
            return export_model(model, "onnx", folder, split)
        except ExportError:
            raise
        except Exception as error:  # tf2onnx's own errors are of many types
            raise ExportError(f"the onnx export of {folder / KERAS_FILE} was not made: "
                              f"{type(error).__name__}: {error}") from error


@dataclass(frozen=True)
class ModelFolder:
    """A written model folder: its class names, and what else a reader of it asks for."""

    path: Path
    class_names: list[str]

    @classmethod
    def open(cls, folder: Path) -> ModelFolder:
        folder = Path(folder)
        if not (folder / CLASSES_FILE).is_file():
            raise PipelineError(f"{folder} holds no trained model ({CLASSES_FILE} is missing): train one first "
                                "(dvc repro), or point --model-dir at a model folder.")
        return cls(folder, read_json(folder / CLASSES_FILE))

    def preprocessing(self) -> Preprocessing:
        """How the model's images were prepared: what ``imgclf predict`` does to a file before the model."""
        return Preprocessing.load(self.path / PREPROCESSING_FILE)


class Classifier(Protocol):
    """A trained model that maps a batch of images (uint8, NHWC) to its outputs."""

    engine: str
    path: Path

    def outputs(self, images: np.ndarray) -> np.ndarray: ...


class OnnxClassifier:
    """``model.onnx`` in an ONNX Runtime session on the CPU."""

    engine = "onnx"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._session = onnx_session(self.path)
        self._input = self._session.get_inputs()[0].name

    def outputs(self, images: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: images.astype(np.float32)})[0]


class KerasClassifier:
    """``model.keras`` loaded in Keras' safe mode, on the current backend."""

    engine = "keras"

    def __init__(self, path: Path, batch_size: int = 64) -> None:
        from imgclf.modeling.modelio import load_model

        self.path = Path(path)
        self.model = load_model(path)
        self.batch_size = batch_size

    def outputs(self, images: np.ndarray) -> np.ndarray:
        return self.model.predict(images, batch_size=self.batch_size, verbose=0)


def load_classifier(model_dir: Path, engine: Engine = "auto") -> Classifier:
    """The model of ``model_dir`` in ``engine``: ``auto`` is ONNX Runtime where ``model.onnx`` and
    ``onnxruntime`` are both there, else Keras."""
    onnx_path = Path(model_dir) / ONNX_FILE
    if engine == "auto":
        if not onnx_path.is_file():
            logger.debug("no %s: predicting with Keras", onnx_path)
            engine = "keras"
        else:
            try:
                import onnxruntime  # noqa: F401
                engine = "onnx"
            except ImportError:
                logger.info("onnxruntime is not installed: predicting with Keras (pip install onnxruntime "
                            "starts predictions faster)")
                engine = "keras"
    if engine == "onnx":
        if not onnx_path.is_file():
            raise PipelineError(f"no {onnx_path}: the train stage writes it once it matches the Keras model (the "
                                "log of its run says why it did not); run dvc repro, or predict with --engine keras.")
        return OnnxClassifier(onnx_path)
    return KerasClassifier(Path(model_dir) / KERAS_FILE)

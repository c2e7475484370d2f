"""Compile and fit a model; keep the epoch with the best validation loss; log every epoch.

Only ``keras`` APIs here (plus one TensorFlow switch for deterministic kernels when TensorFlow is
the backend), so the train stage runs the same on the TensorFlow, JAX and PyTorch backends.
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass
from typing import Any, Protocol

import keras
import numpy as np

from imgclf.dataset import ImageSet
from imgclf.errors import PipelineError
from imgclf.params import TrainParams

logger = logging.getLogger(__name__)

HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")


class TrainingError(PipelineError):
    """Training diverged or could not start with these settings."""


def make_deterministic(seed: int) -> None:
    """Seed Python, NumPy and the backend; ask TensorFlow for deterministic kernels.

    With the same params on the same machine, training then gives the same weights every time.
    """
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def make_optimizer(params: TrainParams) -> keras.optimizers.Optimizer:
    if params.optimizer == "sgd":
        return keras.optimizers.SGD(params.learning_rate, momentum=params.momentum, nesterov=params.nesterov)
    if params.optimizer == "adam":
        return keras.optimizers.Adam(params.learning_rate)
    if params.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(params.learning_rate)
    if params.optimizer == "adadelta":
        return keras.optimizers.Adadelta(params.learning_rate)
    raise ValueError(f"unknown optimizer {params.optimizer!r}")


def compile_model(model: keras.Model, params: TrainParams) -> None:
    """Binary cross-entropy for a sigmoid output (two classes), sparse categorical otherwise."""
    binary = model.output_shape[-1] == 1
    loss = "binary_crossentropy" if binary else "sparse_categorical_crossentropy"
    model.compile(optimizer=make_optimizer(params), loss=loss, metrics=["accuracy"])


class BestWeights(keras.callbacks.Callback):
    """Remember the weights of the epoch with the lowest validation loss; restore them at the end."""

    def __init__(self, monitor: str = "val_loss") -> None:
        super().__init__()
        self.monitor = monitor
        self.best_value = math.inf
        self.best_epoch: int | None = None  # 1-based, as Keras prints epochs
        self._best_weights: list[np.ndarray] | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is not None and value < self.best_value:
            self.best_value = float(value)
            self.best_epoch = epoch + 1
            self._best_weights = self.model.get_weights()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._best_weights is not None:
            self.model.set_weights(self._best_weights)


class MetricLogger(Protocol):
    """What :class:`EpochLogger` needs of ``dvclive.Live``."""

    step: int

    def log_metric(self, name: str, val: float) -> None: ...

    def make_summary(self) -> None: ...


class EpochLogger(keras.callbacks.Callback):
    """Log train and validation loss and accuracy after every epoch (to DVCLive in the stage).

    Names are ``train/loss``, ``val/loss``... so DVCLive writes one TSV file per curve and both
    splits of one metric can be drawn on one chart. Steps are epochs counted from 1, as Keras
    prints them and as ``best_epoch`` in metrics/train.json counts them.
    """

    def __init__(self, live: MetricLogger) -> None:
        super().__init__()
        self.live = live

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        self.live.step = epoch + 1
        for key in HISTORY_KEYS:
            if key in logs:
                split, metric = ("val", key[4:]) if key.startswith("val_") else ("train", key)
                self.live.log_metric(f"{split}/{metric}", float(logs[key]))
        self.live.make_summary()


@dataclass(frozen=True)
class TrainingResult:
    history: dict[str, list[float]]
    best_epoch: int


def fit(model: keras.Model, train_set: ImageSet, val_set: ImageSet, params: TrainParams,
        callbacks: list[keras.callbacks.Callback] | None = None) -> TrainingResult:
    """Train on ``train_set`` and keep the weights of the epoch with the best validation loss."""
    best = BestWeights()
    history = model.fit(
        train_set.images, train_set.labels,
        validation_data=(val_set.images, val_set.labels),
        batch_size=params.batch_size,
        epochs=params.epochs,
        shuffle=True,
        callbacks=[best, *(callbacks or [])],
        # a live progress bar in a terminal; one line per epoch in a log or CI
        verbose=1 if sys.stdout.isatty() else 2,
    )
    if best.best_epoch is None:
        raise TrainingError(f"the validation loss was never finite in {params.epochs} epochs: training "
                            f"diverged; lower train.learning_rate (now {params.learning_rate}).")
    logger.info("best epoch %d of %d (val_loss %.4f)", best.best_epoch, params.epochs, best.best_value)
    return TrainingResult(history={key: [float(v) for v in values] for key, values in history.history.items()},
                          best_epoch=best.best_epoch)


def summary_metrics(result: TrainingResult, model: keras.Model, train_set: ImageSet,
                    val_set: ImageSet) -> dict[str, Any]:
    """What ``metrics/train.json`` holds: the kept (best) epoch's scores and the run's shape."""
    at_best = {key: round(values[result.best_epoch - 1], 6) for key, values in result.history.items()
               if key in HISTORY_KEYS}
    return {
        "best_epoch": result.best_epoch,
        "epochs": len(result.history["loss"]),
        **at_best,
        "parameters": int(model.count_params()),
        "train_images": len(train_set),
        "val_images": len(val_set),
    }

"""Where each epoch's record goes besides the log: DVCLive (``dvc plots``, a running ``dvc exp show``), TensorBoard."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Protocol

from imgclf.training.records import HISTORY_KEYS

logger = logging.getLogger(__name__)


class EpochSink(Protocol):
    """Somewhere an epoch's record goes: DVCLive, TensorBoard."""

    def log_epoch(self, epoch: int, record: dict[str, float]) -> None: ...


class MetricLogger(Protocol):
    """What :class:`LiveSink` needs of ``dvclive.Live``."""

    step: int

    def log_metric(self, name: str, val: float) -> None: ...

    def make_summary(self) -> None: ...


class LiveSink:
    """Per-epoch curves to DVCLive: ``train/loss``, ``val/loss``..., one TSV file each, so that both
    splits of one metric can be drawn on one chart, plus ``learning_rate``. Steps are epochs counted
    from 1, as Keras prints them and as ``best_epoch`` in metrics/train.json counts them."""

    def __init__(self, live: MetricLogger) -> None:
        self.live = live

    def log_epoch(self, epoch: int, record: dict[str, float]) -> None:
        self.live.step = epoch
        for key in HISTORY_KEYS:
            if key in record:
                split, metric = ("val", key[4:]) if key.startswith("val_") else ("train", key)
                self.live.log_metric(f"{split}/{metric}", record[key])
        if "learning_rate" in record:
            self.live.log_metric("learning_rate", record["learning_rate"])
        self.live.make_summary()


class TensorBoardSink:
    """Per-epoch scalars as TensorBoard event files (``tensorboard --logdir <folder>``).

    Written after each epoch, not from batch hooks: a Keras callback with batch hooks makes every
    training step wait for its results, which slows training down.
    """

    def __init__(self, folder: Path) -> None:
        import tensorboard  # noqa: F401  (tf.summary writes nothing without it)
        import tensorflow as tf

        self._summary = tf.summary
        self._writers = {split: tf.summary.create_file_writer(str(Path(folder) / split)) for split in ("train", "val")}

    @classmethod
    def create(cls, folder: Path) -> TensorBoardSink | None:
        """None, with a log line, where TensorFlow (which writes the event files) is not installed."""
        try:
            return cls(folder)
        except ImportError:
            logger.warning("no TensorBoard logs: writing them needs TensorFlow and TensorBoard "
                           "(pip install tensorflow tensorboard)")
            return None

    def log_epoch(self, epoch: int, record: dict[str, float]) -> None:
        for key, value in record.items():
            split = "val" if key.startswith("val_") else "train"
            with self._writers[split].as_default():
                self._summary.scalar(f"epoch_{key.removeprefix('val_')}", value, step=epoch)
        for writer in self._writers.values():
            writer.flush()


def epoch_sinks(live: MetricLogger, tensorboard: Path | None) -> list[EpochSink]:
    """DVCLive's sink, and TensorBoard's in the folder ``tensorboard`` (emptied first; None: none)."""
    sinks: list[EpochSink] = [LiveSink(live)]
    if tensorboard is not None:
        shutil.rmtree(tensorboard, ignore_errors=True)
        board = TensorBoardSink.create(tensorboard)
        sinks += [board] if board else []
    return sinks

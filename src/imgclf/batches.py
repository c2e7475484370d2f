"""Batches of a split for Keras, read from its shards as training, evaluation and prediction ask for them.

A ``keras.utils.PyDataset``, which every Keras 3 backend takes as it is (TensorFlow wraps it in
``tf.data`` itself; JAX and PyTorch iterate it), so the JAX backend needs no TensorFlow for input.
:data:`READ_THREADS` threads read the next batches while the model steps on the current one
(positioned reads release the GIL), and at most :data:`QUEUED_BATCHES` wait: the memory input
takes is about ``batch_size x QUEUED_BATCHES`` images, whatever the size of the split.

The order of the rows is the caller's: training passes each epoch's permutation
(:func:`imgclf.training.epoch_order`, a function of the seed and the epoch), so a global shuffle
costs one index array and the batches of an epoch are the same in every run, resumed or not.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from imgclf.dataset import Split
from imgclf.evaluation import class_probabilities

READ_THREADS = 2
QUEUED_BATCHES = 4


class SplitBatches(keras.utils.PyDataset):
    """``rows`` of ``split`` (all of them, in order, when None) in batches of ``batch_size``:
    ``(images, labels)``, or ``(images,)`` without ``labels``; ``flip`` mirrors each image left-right."""

    def __init__(self, split: Split, rows: np.ndarray | None, batch_size: int, *, labels: bool = True,
                 flip: bool = False, workers: int = READ_THREADS, queued: int = QUEUED_BATCHES) -> None:
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=queued)
        self.split = split
        self.rows = np.arange(len(split)) if rows is None else np.asarray(rows, dtype=np.int64)
        self.batch_size = batch_size
        self.with_labels = labels
        self.flip = flip

    def __len__(self) -> int:
        return math.ceil(len(self.rows) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, ...]:
        rows = self.rows[index * self.batch_size:(index + 1) * self.batch_size]
        images = self.split.read(rows)
        if self.flip:
            images = images[:, :, ::-1]
        return (images, self.split.labels[rows]) if self.with_labels else (images,)


def predict_split(model: keras.Model, split: Split, batch_size: int, tta: str = "none") -> np.ndarray:
    """(count, classes) probabilities of ``split``'s images, batch by batch.

    ``tta="flip"`` averages each image's output with its left-right mirror's (test-time
    augmentation, as in the CIFAR-10 training speedruns). Holds the outputs, never the pixels.
    """
    if tta not in ("none", "flip"):
        raise ValueError(f"unknown test-time augmentation {tta!r}; choose none or flip")
    outputs = model.predict(SplitBatches(split, None, batch_size, labels=False), verbose=0)
    if tta == "flip":
        mirrored = model.predict(SplitBatches(split, None, batch_size, labels=False, flip=True), verbose=0)
        outputs = (outputs + mirrored) / 2
    return class_probabilities(outputs)

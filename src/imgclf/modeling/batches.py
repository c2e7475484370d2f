"""Batches of a split for Keras, read from its shards as training, evaluation and prediction ask for them.

:func:`split_batches` gives ``model.fit`` and ``model.predict`` what reads fastest on the current
backend, from the same rows and the same reading code (:meth:`imgclf.data.dataset.Split.read`):

- TensorFlow: a ``tf.data`` pipeline whose parallel calls each read a block of about
  :data:`BLOCK_BYTES` (several batches in one Python call) and cut it into batches in TensorFlow.
  Keras wraps a ``PyDataset`` in ``tf.data.Dataset.from_generator``, one Python call per batch
  through its own thread queue, which cannot keep a small network on small images fed
  (``benchmarks/streaming.py`` times both ways).
- JAX and PyTorch: :class:`SplitBatches`, a ``keras.utils.PyDataset``, which they iterate in Python
  as it is, so the JAX backend needs no TensorFlow for input.

Either way :data:`READ_THREADS` threads read ahead while the model steps on the current batch
(positioned reads release the GIL), and what waits is bounded: about ``READ_THREADS + 1`` blocks and
:data:`QUEUED_BATCHES` batches, whatever the size of the split.

The order of the rows is the caller's: training passes each epoch's permutation
(:func:`imgclf.training.loop.epoch_order`, a function of the seed and the epoch), so a global shuffle
costs one index array and the batches of an epoch are the same in every run, resumed or not. With
``train.mixup`` or ``train.cutmix``, training batches are mixed as they are read
(:class:`imgclf.modeling.mixing.Mixing`), batch by batch, and their labels are float shares per class.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np

from imgclf.data.dataset import Split
from imgclf.modeling.mixing import Mixing

READ_THREADS = 2
QUEUED_BATCHES = 4
# What one read of the TensorFlow pipeline takes, at least one batch: 21 batches of 32 at 32x32,
# one at 224x224, so that small images cost few Python calls per batch.
BLOCK_BYTES = 2 * 2**20


def read_batch(split: Split, rows: np.ndarray, *, labels: bool = True, flip: bool = False) -> tuple[np.ndarray, ...]:
    """``(images, labels)`` of ``rows`` (``(images,)`` without ``labels``), mirrored left-right with ``flip``."""
    images = split.read(rows)
    if flip:
        images = np.ascontiguousarray(images[:, :, ::-1])
    return (images, np.asarray(split.labels[rows], dtype=np.int32)) if labels else (images,)


def read_mixed(split: Split, rows: np.ndarray, mixing: Mixing, batch_size: int,
               first_batch: int) -> tuple[np.ndarray, np.ndarray]:
    """``(images, label shares)`` of ``rows``, the batches ``first_batch``, ``first_batch + 1``, ...
    of an epoch, each mixed on its own."""
    images, labels = read_batch(split, rows)
    parts = [mixing(images[start:start + batch_size], labels[start:start + batch_size], first_batch + number)
             for number, start in enumerate(range(0, len(rows), batch_size))]
    return np.concatenate([part[0] for part in parts]), np.concatenate([part[1] for part in parts])


class SplitBatches(keras.utils.PyDataset):
    """``rows`` of ``split`` (all of them, in order, when None) in batches of ``batch_size``:
    ``(images, labels)``, or ``(images,)`` without ``labels``; ``flip`` mirrors each image left-right;
    ``mixing`` mixes each batch and gives its labels as shares."""

    def __init__(self, split: Split, rows: np.ndarray | None, batch_size: int, *, labels: bool = True,
                 flip: bool = False, mixing: Mixing | None = None, workers: int = READ_THREADS,
                 queued: int = QUEUED_BATCHES) -> None:
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=queued)
        self.split = split
        self.rows = np.arange(len(split)) if rows is None else np.asarray(rows, dtype=np.int64)
        self.batch_size = batch_size
        self.with_labels = labels
        self.flip = flip
        self.mixing = mixing

    def __len__(self) -> int:
        return math.ceil(len(self.rows) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, ...]:
        rows = self.rows[index * self.batch_size:(index + 1) * self.batch_size]
        if self.mixing is not None:
            return read_mixed(self.split, rows, self.mixing, self.batch_size, index)
        return read_batch(self.split, rows, labels=self.with_labels, flip=self.flip)


def split_batches(split: Split, rows: np.ndarray | None, batch_size: int, *, labels: bool = True,
                  flip: bool = False, mixing: Mixing | None = None) -> Any:
    """``rows`` of ``split`` (all, in order, when None) in batches of ``batch_size``, as the current
    backend reads them fastest: a ``tf.data.Dataset`` with TensorFlow, else :class:`SplitBatches`.
    ``mixing`` (training only) mixes each batch; its labels are then float32 shares, ``(n, outputs)``
    (``(n,)`` for one sigmoid output)."""
    if mixing is not None and (flip or not labels):
        raise ValueError("mixing needs the labels and no flip: it is for training batches")
    if keras.backend.backend() != "tensorflow":
        return SplitBatches(split, rows, batch_size, labels=labels, flip=flip, mixing=mixing)
    import tensorflow as tf

    rows = np.arange(len(split)) if rows is None else np.asarray(rows, dtype=np.int64)
    batch_bytes = batch_size * int(np.prod(split.image_shape))
    block = batch_size * max(1, BLOCK_BYTES // batch_bytes)
    shapes: list[tuple[int | None, ...]] = [(None, *split.image_shape)]
    kinds = [tf.uint8]
    if mixing is not None:  # the labels as shares per output
        kinds.append(tf.float32)
        shapes.append((None,) if mixing.outputs == 1 else (None, mixing.outputs))
    elif labels:
        kinds.append(tf.int32)
        shapes.append((None,))

    def read_block(index: np.ndarray) -> tuple[np.ndarray, ...]:
        start = int(index) * block
        if mixing is not None:
            return read_mixed(split, rows[start:start + block], mixing, batch_size, start // batch_size)
        return read_batch(split, rows[start:start + block], labels=labels, flip=flip)

    def typed(index: Any) -> Any:
        parts = tf.numpy_function(read_block, [index], kinds, stateful=False)
        parts = tuple(tf.ensure_shape(part, shape) for part, shape in zip(parts, shapes, strict=True))
        return parts if labels else parts[0]

    blocks = tf.data.Dataset.range(math.ceil(len(rows) / block))
    blocks = blocks.map(typed, num_parallel_calls=READ_THREADS, deterministic=True)
    batches = blocks.rebatch(batch_size)  # blocks hold whole batches: only the last one is short
    # a known length, as a PyDataset has: without it the weights differed from the PyDataset path's
    # from the second epoch on (the digits); with it the metrics are byte-identical
    batches = batches.apply(tf.data.experimental.assert_cardinality(math.ceil(len(rows) / batch_size)))
    # No autotuning: the parallelism and the queue are fixed above, and with it on, releasing an
    # epoch's iterator (when each epoch's `fit` returns) waited about as long as the epoch's steps
    # had taken (benchmarks/README.md, "epoch_time.py").
    options = tf.data.Options()
    options.autotune.enabled = False
    return batches.prefetch(QUEUED_BATCHES).with_options(options)

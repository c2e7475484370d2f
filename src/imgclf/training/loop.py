"""The epoch loop: train a model epoch by epoch with schedules, plateaus, early stopping, fine-tuning.

The epoch loop is ours, not ``model.fit(epochs=N)``'s, so that everything that decides the next
epoch is either in the model file (weights, optimizer state, the random layers' seeds) or in a
small state record (history, best epoch, rate cuts). An interrupted run then resumes from its last
epoch checkpoint and ends exactly where an uninterrupted run ends: the shuffling of epoch e is
drawn from (seed, e), early stopping and reduce-on-plateau are functions of the validation history.
Each epoch's batches are read from the split's shards in that order (:mod:`imgclf.modeling.batches`), so
neither the split nor a shuffled copy of it is ever held in memory.

Only ``keras`` APIs here (plus one TensorFlow switch for deterministic kernels when TensorFlow is
the backend), so the train stage runs the same on the TensorFlow, JAX and PyTorch backends.
"""

from __future__ import annotations

import contextlib
import logging
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from imgclf.data.dataset import Split
from imgclf.modeling.augment import start_epoch
from imgclf.modeling.batches import split_batches
from imgclf.modeling.initialisation import whitening_stop_steps
from imgclf.modeling.mixing import Mixing
from imgclf.modeling.models import unfreeze_backbone
from imgclf.modeling.optim import (
    balanced_class_weights,
    learning_rate_schedule,
    make_loss,
    make_metrics,
    make_optimizer,
    muon_paths,
    norm_shift_paths,
    steps_per_epoch,
)
from imgclf.modeling.params import TrainParams
from imgclf.plumbing.errors import PipelineError
from imgclf.training.checkpoints import Checkpoints
from imgclf.training.lookahead import Lookahead
from imgclf.training.records import HISTORY_KEYS, EpochTiming, TrainingResult, TrainingState
from imgclf.training.sinks import EpochSink

logger = logging.getLogger(__name__)


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


def compile_model(model: keras.Model, params: TrainParams, steps: int = 1, learning_rate: Any = None) -> None:
    """Compile with ``train``'s optimizer, loss and XLA setting.

    ``learning_rate`` overrides the schedule built from ``params`` for ``steps`` steps per epoch
    (the fine-tuning phase uses a constant rate of its own).
    """
    if learning_rate is None:
        learning_rate = learning_rate_schedule(params, steps)
    binary = model.output_shape[-1] == 1
    optimizer = make_optimizer(params, learning_rate, norm_shift_paths(model),
                               whitening_stop_steps(model, params, steps), muon_paths(model))
    model.compile(optimizer=optimizer, loss=make_loss(binary, params.label_smoothing, params.mixes),
                  metrics=make_metrics(params.mixes), jit_compile=params.jit_compile)


class EpochTimer(keras.callbacks.Callback):
    """Seconds of the epoch's training steps and of its validation steps.

    Epoch-level hooks only: a Keras callback with batch hooks makes every training step wait for
    its results (as :class:`imgclf.training.sinks.TensorBoardSink` says).
    """

    def __init__(self) -> None:
        super().__init__()
        self.seconds = self.validation_seconds = 0.0
        self._start = self._training_end = self._validation_start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._start, self._training_end, self.validation_seconds = time.perf_counter(), 0.0, 0.0

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._training_end = self._validation_start = time.perf_counter()

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        self.validation_seconds = time.perf_counter() - self._validation_start

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.seconds = (self._training_end or time.perf_counter()) - self._start


def epoch_order(count: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled order of epoch ``epoch``: a function of (seed, epoch) only, so resuming repeats it."""
    return np.random.default_rng([seed, epoch]).permutation(count)


def epochs_without_improvement(values: Sequence[float], since: int = 0) -> int:
    """Epochs since the lowest finite value, counting only from index ``since`` on (a rate cut resets it)."""
    finite = [(value, index) for index, value in enumerate(values) if math.isfinite(value)]
    if not finite:
        return len(values) - since
    best_index = min(finite)[1]
    return len(values) - 1 - max(best_index, since - 1)


def should_cut_rate(val_losses: Sequence[float], rate_cuts: Sequence[int], patience: int | None) -> bool:
    """Reduce-on-plateau: ``patience`` epochs without a better validation loss since the best or the last cut."""
    if patience is None:
        return False
    since = rate_cuts[-1] if rate_cuts else 0
    return epochs_without_improvement(val_losses, since) >= patience


def should_stop(val_losses: Sequence[float], patience: int | None) -> bool:
    """Early stopping: ``patience`` epochs without a better validation loss."""
    return patience is not None and epochs_without_improvement(val_losses) >= patience


def _share(rows: np.ndarray, process: int, processes: int) -> np.ndarray:
    """Process ``process``'s share of ``rows``: every ``processes``-th row, the same count for each process
    (the few left over are left out) so that all processes take the same number of steps."""
    if processes == 1:
        return rows
    usable = len(rows) - len(rows) % processes
    return rows[process:usable:processes]


def current_learning_rate(model: keras.Model) -> float:
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


def train(build: Callable[[], keras.Model], train_set: Split, val_set: Split, params: TrainParams, *,
          sinks: Sequence[EpochSink] = (), checkpoints: Checkpoints | None = None, scope: Any = None,
          shard: tuple[int, int] = (0, 1), callbacks: Sequence[keras.callbacks.Callback] = (),
          prune: Callable[[int, dict[str, float]], bool] | None = None) -> tuple[keras.Model, TrainingResult]:
    """Build the model (or restore it from the last of ``checkpoints``, given with ``train.resume``:
    :func:`imgclf.training.checkpoints.run_checkpoints`) and train it; return it with the best
    epoch's weights (lowest validation loss).

    ``build`` makes the uncompiled model; it and every compile run inside ``scope`` (a distribution
    strategy's). With ``shard`` (this process, processes), each of several processes training one
    model together feeds its own share of every batch. ``callbacks`` go to every epoch's ``fit``.
    ``prune``, called with each finished epoch (from 1) and its record, stops the run where it says
    True: a hyperparameter search's hopeless trial (:mod:`imgclf.tuning.trial`).
    """
    scope = scope or contextlib.nullcontext()
    processes = shard[1]
    if params.batch_size % processes:
        raise TrainingError(f"train.batch_size {params.batch_size} must be divisible by the {processes} processes "
                            "training together: each feeds the same share of every batch.")
    steps = steps_per_epoch(len(train_set), params.batch_size)
    model, best_weights, state = _start(build, params, steps, checkpoints, scope)
    if params.lookahead:
        callbacks = [*callbacks, Lookahead(steps, params.total_epochs, first_epoch=state.epoch)]
    for epoch, _ in enumerate(state.history.get("loss", []), start=1):  # a resumed run's curves, again
        for sink in sinks:
            sink.log_epoch(epoch, {key: values[epoch - 1] for key, values in state.history.items()})
    class_weight = _class_weight(train_set, params)
    epoch_timings: list[EpochTiming] = []
    pruned_at_epoch = None

    for epoch in range(state.epoch, params.total_epochs):
        epoch_start = time.perf_counter()
        if epoch == params.epochs and state.phase == "train":
            _start_fine_tuning(model, params, scope)
            state.phase = "fine_tune"
        record = _fit_epoch(model, train_set, val_set, params, epoch, shard, class_weight, callbacks)
        state.record(record)
        state.epoch = epoch + 1
        if _is_best_so_far(record, state, params):
            best_weights = model.get_weights()
        _log_epoch(record, state, params, len(train_set))
        for sink in sinks:
            sink.log_epoch(epoch + 1, record)
        _cut_rate_on_plateau(model, record, state, params)
        stop = should_stop(state.history["val_loss"], params.early_stopping_patience)
        if checkpoints is not None:
            checkpoints.save(model, best_weights, state)
        epoch_timings.append(EpochTiming(epoch + 1, round(time.perf_counter() - epoch_start, 3), record["seconds"],
                                         record["validation_seconds"]))
        if stop:
            logger.info("early stopping after epoch %d: no better val_loss for %d epochs", epoch + 1,
                        params.early_stopping_patience)
            break
        if prune is not None and epoch + 1 < params.total_epochs and prune(epoch + 1, record):
            pruned_at_epoch = epoch + 1
            break

    if state.best_epoch is None or best_weights is None:
        raise TrainingError(f"the validation loss was never finite in {state.epoch} epochs: training "
                            f"diverged; lower train.learning_rate (now {params.learning_rate:g}).")
    model.set_weights(best_weights)
    logger.info("best epoch %d of %d (val_loss %.4f)", state.best_epoch, state.epoch, state.best_value)
    return model, TrainingResult(history=state.history, best_epoch=state.best_epoch,
                                 images_per_second=_images_per_second(epoch_timings, len(train_set)),
                                 epoch_timings=tuple(epoch_timings), pruned_at_epoch=pruned_at_epoch)


def _start(build: Callable[[], keras.Model], params: TrainParams, steps: int, checkpoints: Checkpoints | None,
           scope: Any) -> tuple[keras.Model, list[np.ndarray] | None, TrainingState]:
    """The model, the best epoch's weights so far and the run's state: restored from the last
    checkpoint when there is one, else a new model, compiled, and a new run."""
    restored = checkpoints.load() if checkpoints is not None else None
    with scope:
        if restored is not None and checkpoints is not None:
            model, best_weights, state = restored
            logger.info("resuming from the checkpoint after epoch %d in %s", state.epoch, checkpoints.folder)
            return model, best_weights, state
        model = build()
        logger.info("training %s (%s parameters)", model.name, f"{model.count_params():,}")
        compile_model(model, params, steps)
    return model, None, TrainingState()


def _class_weight(train_set: Split, params: TrainParams) -> dict[int, float] | None:
    """``train.class_weight: balanced``: each class's weight, logged by name; else none."""
    if params.class_weight != "balanced":
        return None
    class_weight = balanced_class_weights(train_set.labels, len(train_set.class_names))
    logger.info("class weights: %s",
                {name: round(class_weight[index], 3) for index, name in enumerate(train_set.class_names)})
    return class_weight


def _start_fine_tuning(model: keras.Model, params: TrainParams, scope: Any) -> None:
    """The second phase of a transfer model: the top backbone layers train, at the fine-tuning rate."""
    with scope:
        trainable = unfreeze_backbone(model, params.fine_tune.layers)
        compile_model(model, params, learning_rate=params.fine_tune.learning_rate)
    logger.info("fine-tuning: %d backbone layers train now, learning rate %g", trainable,
                params.fine_tune.learning_rate)


def _is_best_so_far(record: dict[str, float], state: TrainingState, params: TrainParams) -> bool:
    """Whether the epoch just recorded has the lowest validation loss yet (and note it in ``state``);
    a training loss that is no longer finite stops the run: it diverged."""
    if not math.isfinite(record["loss"]):
        raise TrainingError(f"the training loss became {record['loss']} in epoch {state.epoch}: training diverged; "
                            f"lower train.learning_rate (now {params.learning_rate:g}).")
    val_loss = record.get("val_loss", math.nan)
    if math.isfinite(val_loss) and val_loss < state.best_value:
        state.best_value, state.best_epoch = val_loss, state.epoch
        return True
    return False


def _log_epoch(record: dict[str, float], state: TrainingState, params: TrainParams, images: int) -> None:
    """The epoch's log line: its scores, rate, seconds and speed."""
    logger.info("epoch %d/%d: loss %.4f, accuracy %.4f, val_loss %.4f, val_accuracy %.4f, lr %.3g, %.1f s "
                "(%.0f images/s) + validation %.1f s", state.epoch, params.total_epochs, record["loss"],
                record.get("accuracy", math.nan), record.get("val_loss", math.nan),
                record.get("val_accuracy", math.nan), record["learning_rate"], record["seconds"],
                images / max(record["seconds"], 1e-9), record["validation_seconds"])


def _cut_rate_on_plateau(model: keras.Model, record: dict[str, float], state: TrainingState,
                         params: TrainParams) -> None:
    """``train.reduce_lr_patience``: after that many epochs without a better validation loss, the
    rate is multiplied by ``train.reduce_lr_factor`` (in the first phase only)."""
    if state.phase != "train" or not should_cut_rate(state.history["val_loss"], state.rate_cuts,
                                                     params.reduce_lr_patience):
        return
    model.optimizer.learning_rate = record["learning_rate"] * params.reduce_lr_factor
    state.rate_cuts.append(state.epoch)
    logger.info("no better val_loss for %d epochs: learning rate cut to %g", params.reduce_lr_patience,
                record["learning_rate"] * params.reduce_lr_factor)


def _images_per_second(epoch_timings: Sequence[EpochTiming], images: int) -> float:
    """The training's speed: the median epoch's, its training steps only; the first epoch includes
    compiling, so it is left out when there are others."""
    step_seconds = [timing.train_step_seconds for timing in epoch_timings]
    rates = [images / seconds for seconds in (step_seconds[1:] or step_seconds) if seconds > 0]
    return round(statistics.median(rates), 1) if rates else 0.0


def _fit_epoch(model: keras.Model, train_set: Split, val_set: Split, params: TrainParams, epoch: int,
               shard: tuple[int, int], class_weight: dict[int, float] | None,
               callbacks: Sequence[keras.callbacks.Callback]) -> dict[str, float]:
    """Train epoch ``epoch`` (0-based) in its own shuffled order, validate; return the epoch's record:
    losses and accuracies, the learning rate it started with, and the seconds its training steps took."""
    process, processes = shard
    order = _share(epoch_order(len(train_set), params.seed, epoch), process, processes)
    val_rows = _share(np.arange(len(val_set)), process, processes)
    timer = EpochTimer()
    learning_rate = current_learning_rate(model)
    batch_size = params.batch_size // processes
    start_epoch(model, epoch)  # train.augment.horizontal_flip: alternate
    mixing = (Mixing(params.mixup, params.cutmix, model.output_shape[-1], params.seed, epoch)
              if params.mixes else None)
    logs = model.fit(split_batches(train_set, order, batch_size, mixing=mixing),
                     validation_data=split_batches(val_set, val_rows, batch_size),
                     epochs=epoch + 1, initial_epoch=epoch, shuffle=False,
                     class_weight=class_weight, callbacks=[timer, *callbacks],
                     verbose=1 if sys.stdout.isatty() else 0)  # a progress bar in a terminal; our log line always
    record = {key: float(values[-1]) for key, values in logs.history.items() if key in HISTORY_KEYS}
    return {**record, "learning_rate": learning_rate, "seconds": round(timer.seconds, 3),
            "validation_seconds": round(timer.validation_seconds, 3)}



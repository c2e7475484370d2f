"""What a finished run writes about itself: ``metrics/train.json`` (tracked) and ``logs/train_timing.json`` (not)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import keras

from imgclf.data.dataset import Split
from imgclf.modeling.params import TrainParams
from imgclf.training.records import HISTORY_KEYS, TrainingResult


def timing_record(result: TrainingResult) -> dict[str, Any]:
    """What ``logs/train_timing.json`` holds: the run's speed, which differs from rerun to rerun.

    Kept out of ``metrics/train.json`` (a DVC output) so that a rerun with the same params leaves
    ``dvc.lock`` and ``git status`` as they were.
    """
    return {
        "train_images_per_second": result.images_per_second,
        "seconds": round(sum(timing.seconds for timing in result.epoch_timings), 3),
        # per epoch: its wall time, its training and validation steps, and the one over the sum of the other two
        "per_epoch": [{**asdict(timing), "overhead_ratio": round(timing.overhead_ratio, 3)}
                      for timing in result.epoch_timings],
    }


def summary_metrics(result: TrainingResult, model: keras.Model, train_set: Split, val_set: Split,
                    params: TrainParams, devices: dict[str, Any] | None = None) -> dict[str, Any]:
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
        "batch_size": params.batch_size,
        **(devices or {}),
        **({"pruned_at_epoch": result.pruned_at_epoch} if result.pruned_at_epoch is not None else {}),
    }

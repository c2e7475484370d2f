"""The records of a training run: what an epoch records, the state that decides the rest, its timings and result."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")


@dataclass
class TrainingState:
    """Everything besides the model that decides the rest of a run; saved with every checkpoint."""

    epoch: int = 0  # epochs completed
    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int | None = None  # 1-based
    best_value: float = math.inf
    rate_cuts: list[int] = field(default_factory=list)  # epochs after which reduce-on-plateau cut the rate
    phase: str = "train"  # train | fine_tune

    def record(self, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.history.setdefault(key, []).append(value)


@dataclass(frozen=True)
class EpochTiming:
    """How long one epoch of this run took: all of it, and its training steps alone."""

    epoch: int  # 1-based
    seconds: float  # the whole epoch: training steps, validation, callbacks, logging, checkpoint
    train_step_seconds: float  # the training steps alone (EpochTimer)
    validation_seconds: float  # the validation steps alone

    @property
    def overhead_ratio(self) -> float:
        """The epoch's wall time over its training and validation steps: 1.0 when nothing else took time."""
        return self.seconds / max(self.train_step_seconds + self.validation_seconds, 1e-9)


@dataclass(frozen=True)
class TrainingResult:
    history: dict[str, list[float]]
    best_epoch: int
    images_per_second: float  # training steps only, median over the epochs after the first
    # this run's epochs (a resumed run's only); timings differ between reruns, so they are kept out
    # of the DVC-tracked metrics: the train stage writes them to logs/train_timing.json
    epoch_timings: tuple[EpochTiming, ...] = ()
    pruned_at_epoch: int | None = None  # where a hyperparameter search stopped a hopeless trial

"""``imgclf lr-find``: a short run with a rising learning rate, to choose ``train.learning_rate``.

Smith's range test ("Cyclical Learning Rates for Training Neural Networks", 2017), as fastai's
``lr_find`` runs it: the model ``params.yaml``'s ``train`` section describes, a fresh copy, trains
on the training split for ``steps`` batches while the rate grows exponentially from ``start`` to
``end``; the loss of each batch is recorded and smoothed, and the run stops once the smoothed loss
is four times its best (the rate is too high by then). The suggestion is the rate at which the
smoothed loss falls fastest, before its minimum: high enough to learn fast, below where it blows up.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgclf.data.dataset import Split
from imgclf.modeling.params import TrainParams
from imgclf.plumbing.errors import PipelineError

logger = logging.getLogger(__name__)

SMOOTHING = 0.98  # fastai's: an exponential moving average over about the last 50 batches
DIVERGED = 4.0  # stop once the smoothed loss is this many times its best


@dataclass(frozen=True)
class LearningRateSweep:
    """The rates tried, one per batch, the loss of each batch and its smoothed curve."""

    rates: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray

    @property
    def suggestion(self) -> float:
        return suggest_learning_rate(self.rates, self.smoothed)


def sweep_rates(start: float, end: float, steps: int) -> np.ndarray:
    """``steps`` rates growing exponentially from ``start`` to ``end``."""
    if not 0 < start < end:
        raise PipelineError(f"lr-find needs 0 < --start < --end, got {start:g} and {end:g}")
    if steps < 10:
        raise PipelineError(f"lr-find needs at least 10 --steps to draw a curve, got {steps}")
    return np.geomspace(start, end, steps)


def smooth(losses: np.ndarray, beta: float = SMOOTHING) -> np.ndarray:
    """An exponential moving average with bias correction (so the first values are not pulled to 0)."""
    smoothed = np.empty(len(losses))
    average = 0.0
    for step, loss in enumerate(losses):
        average = beta * average + (1 - beta) * float(loss)
        smoothed[step] = average / (1 - beta ** (step + 1))
    return smoothed


def suggest_learning_rate(rates: np.ndarray, smoothed: np.ndarray) -> float:
    """The rate where the smoothed loss falls fastest against log(rate), before its minimum."""
    lowest = int(np.argmin(smoothed))
    if lowest < 2:
        raise PipelineError("the loss did not fall at any rate of the sweep: start lr-find lower (--start)")
    slopes = np.gradient(smoothed[:lowest + 1], np.log10(rates[:lowest + 1]))
    return float(rates[int(np.argmin(slopes))])


def find_learning_rate(params: TrainParams, train_split: Split, rates: np.ndarray) -> LearningRateSweep:
    """Train a fresh model of ``params`` on ``train_split`` (a packed split), one batch per rate."""
    import keras

    from imgclf.modeling.batches import read_batch
    from imgclf.modeling.models import build_from_params
    from imgclf.training.loop import compile_model, make_deterministic

    make_deterministic(params.seed)
    model = build_from_params(params, train_split, len(train_split.class_names))
    compile_model(model, params, learning_rate=float(rates[0]))
    order = np.random.default_rng(params.seed).permutation(len(train_split))
    batches = max(1, len(order) // params.batch_size)
    losses: list[float] = []
    best = math.inf
    average = 0.0  # smooth()'s moving average, kept as the batches come
    for step, rate in enumerate(rates):
        batch = order[(step % batches) * params.batch_size:][:params.batch_size]
        images, labels = read_batch(train_split, batch)
        model.optimizer.learning_rate = float(rate)
        model.reset_metrics()  # so that the loss train_on_batch returns is this batch's alone
        loss = float(model.train_on_batch(images, labels, return_dict=True)["loss"])
        losses.append(loss)
        average = SMOOTHING * average + (1 - SMOOTHING) * loss
        current = average / (1 - SMOOTHING ** (step + 1))
        if not math.isfinite(loss) or current > DIVERGED * best:
            logger.info("stopped at rate %.2e after %d batches: the loss is rising fast", rate, step + 1)
            break
        best = min(best, current)
    keras.backend.clear_session()
    tried = np.asarray(losses)
    finite = np.isfinite(tried)
    return LearningRateSweep(rates[:len(tried)][finite], tried[finite], smooth(tried[finite]))


def draw_sweep(sweep: LearningRateSweep, path: Path) -> None:
    """Loss against learning rate (log scale), the suggestion marked."""
    import matplotlib.pyplot as plt

    from imgclf.plumbing.plotting import save_figure  # it chooses the Agg backend before any figure is made

    figure, axes = plt.subplots(figsize=(7, 4.5))
    axes.plot(sweep.rates, sweep.losses, color="0.75", linewidth=0.8, label="loss of each batch")
    axes.plot(sweep.rates, sweep.smoothed, color="C0", linewidth=2, label="smoothed")
    suggestion = sweep.suggestion
    axes.axvline(suggestion, color="C3", linestyle="--", label=f"suggested: {suggestion:.2g}")
    axes.set_xscale("log")
    axes.set_xlabel("learning rate")
    axes.set_ylabel("training loss")
    top = float(np.percentile(sweep.losses, 95)) * 1.1
    axes.set_ylim(min(float(sweep.smoothed.min()), float(sweep.losses.min())) * 0.9, top)
    axes.set_title("Learning-rate range test (imgclf lr-find)")
    axes.legend()
    figure.tight_layout()
    save_figure(figure, path)

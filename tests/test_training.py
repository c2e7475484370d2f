"""Real Keras training on tiny in-memory data: best-epoch restore, DVCLive files, determinism."""

import csv

import keras
import numpy as np
import pytest
from dvclive import Live

from imgclf.dataset import ImageSet
from imgclf.models import build_model
from imgclf.params import TrainParams
from imgclf.training import (
    BestWeights,
    EpochLogger,
    TrainingError,
    compile_model,
    fit,
    make_deterministic,
    make_optimizer,
    summary_metrics,
)


def colour_set(count: int, seed: int, num_classes: int = 3) -> ImageSet:
    """Images whose dominant colour channel is their class: learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count, dtype=np.int32) % num_classes
    images = rng.integers(0, 100, size=(count, 8, 8, 3), dtype=np.uint8)
    images[np.arange(count), :, :, labels] += 150
    return ImageSet(images, labels, tuple(f"{i}.png" for i in range(count)),
                    tuple(f"class{i}" for i in range(num_classes)))


def train_once(params: TrainParams, num_classes: int = 3, callbacks=None):
    make_deterministic(params.seed)
    train_set, val_set = colour_set(48, 0, num_classes), colour_set(24, 1, num_classes)
    model = build_model(params.model, (8, 8, 3), num_classes, seed=params.seed)
    compile_model(model, params)
    return model, fit(model, train_set, val_set, params, callbacks), train_set, val_set


@pytest.mark.slow
def test_same_seed_same_weights():
    params = TrainParams(epochs=2, batch_size=8, seed=5)
    first, *_ = train_once(params)
    second, *_ = train_once(params)
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
@pytest.mark.parametrize("num_classes", [2, 3])
def test_training_learns_and_reports_the_best_epoch(num_classes):
    params = TrainParams(epochs=6, batch_size=8, learning_rate=0.01, seed=0)
    model, result, train_set, val_set = train_once(params, num_classes)
    summary = summary_metrics(result, model, train_set, val_set)
    assert summary["epochs"] == 6 and 1 <= summary["best_epoch"] <= 6
    assert summary["val_loss"] == round(min(result.history["val_loss"]), 6)
    assert summary["val_accuracy"] > 0.9
    assert summary["parameters"] == model.count_params()


def test_best_weights_are_restored_at_the_end():
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    callback = BestWeights()
    callback.set_model(model)
    for epoch, val_loss in enumerate([3.0, 1.0, 2.0]):
        model.layers[0].kernel.assign([[float(epoch)]])
        callback.on_epoch_end(epoch, {"val_loss": val_loss})
    callback.on_train_end()
    assert callback.best_epoch == 2
    assert model.get_weights()[0].tolist() == [[1.0]]


@pytest.mark.slow
def test_dvclive_gets_train_and_val_curves_per_epoch(tmp_path):
    params = TrainParams(epochs=3, batch_size=16, seed=0)
    with Live(dir=str(tmp_path / "history"), dvcyaml=None, save_dvc_exp=False) as live:
        train_once(params, callbacks=[EpochLogger(live)])
    for split in ("train", "val"):
        for metric in ("loss", "accuracy"):
            with open(tmp_path / "history" / "plots" / "metrics" / split / f"{metric}.tsv") as handle:
                rows = list(csv.DictReader(handle, delimiter="\t"))
            assert [row["step"] for row in rows] == ["1", "2", "3"]
            assert set(rows[0]) == {"step", metric}  # no timestamps: reruns give identical files


@pytest.mark.slow
def test_a_diverging_run_says_to_lower_the_learning_rate():
    params = TrainParams(epochs=1, batch_size=8, learning_rate=1e30, optimizer="sgd", seed=0)
    with pytest.raises(TrainingError, match=r"lower train\.learning_rate \(now 1e\+30\)"):
        train_once(params)


@pytest.mark.parametrize(("name", "optimizer_class"), [("sgd", keras.optimizers.SGD), ("adam", keras.optimizers.Adam),
                                                       ("rmsprop", keras.optimizers.RMSprop),
                                                       ("adadelta", keras.optimizers.Adadelta)])
def test_every_optimizer_gets_the_learning_rate(name, optimizer_class):
    optimizer = make_optimizer(TrainParams(optimizer=name, learning_rate=0.02, momentum=0.5, nesterov=False))
    assert isinstance(optimizer, optimizer_class)
    assert float(optimizer.learning_rate) == pytest.approx(0.02)
    if name == "sgd":
        assert optimizer.momentum == 0.5 and optimizer.nesterov is False

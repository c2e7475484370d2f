"""train.whiten_bias_epochs: the whitening layer's bias trains in the first epochs and then keeps its
value, its kernel never changes (imgclf.modeling.optim.ScaledRateSGD's stop steps), through Keras' own
training step on the TensorFlow and the JAX backend, wired from the params through the train stage's
compile, and kept by a checkpoint."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from imgclf.data.dataset import ImageSet, open_split, save_image_set
from imgclf.modeling.models import build_from_params
from imgclf.modeling.networks import WHITENING_LAYER
from imgclf.modeling.optim import ScaledRateSGD
from imgclf.modeling.params import TrainParams
from imgclf.plumbing.params import ParamsError
from imgclf.training.loop import compile_model
from tests.helpers import on_jax
from tests.test_initialisation import correlated_images

STOP_STEP, STEPS = 2, 5


class Recorder(keras.callbacks.Callback):
    """Every trainable variable's value after each training step."""

    def __init__(self) -> None:
        super().__init__()
        self.values: list[dict[str, list[float]]] = []

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.values.append({variable.path: np.asarray(variable.value).ravel().tolist()
                            for variable in self.model.trainable_variables})


def values_by_step() -> list[dict[str, list[float]]]:
    """Each variable after each of ``STEPS`` steps of SGD (Nesterov momentum, weight decay) on a
    small network whose first layer's bias stops after ``STOP_STEP`` steps and whose last layer's
    bias never learns."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1, name="last")(keras.layers.Dense(2, name="first")(inputs)))
    rng = np.random.default_rng(0)
    features, targets = rng.normal(size=(8, 3)).astype("float32"), rng.normal(size=(8, 1)).astype("float32")
    model.get_layer("first").bias.assign(np.array([0.5, -0.25], dtype="float32"))
    model.compile(optimizer=ScaledRateSGD(0.05, momentum=0.85, nesterov=True, weight_decay=0.1,
                                          stop_steps={"first/bias": STOP_STEP, "last/bias": 0}), loss="mse")
    recorder = Recorder()
    model.fit(np.tile(features, (STEPS, 1)), np.tile(targets, (STEPS, 1)), batch_size=8, epochs=1, shuffle=False,
              verbose=0, callbacks=[recorder])
    return recorder.values


def assert_the_bias_learns_then_stops(values: list[dict[str, list[float]]]) -> None:
    assert len(values) == STEPS and set(values[0]) == {"first/kernel", "first/bias", "last/kernel", "last/bias"}
    bias = [np.array(step["first/bias"]) for step in values]
    start = np.array([0.5, -0.25])
    assert np.abs(bias[0] - start).min() > 1e-4 and np.abs(bias[1] - bias[0]).min() > 1e-4  # steps 1 and 2 move it
    for later in bias[STOP_STEP:]:
        np.testing.assert_array_equal(later, bias[STOP_STEP - 1])  # then neither momentum nor decay does
    for step in values:  # stop step 0: never changes
        assert step["last/bias"] == [0.0]
    for path in ("first/kernel", "last/kernel"):  # the others go on learning
        assert np.abs(np.array(values[-1][path]) - np.array(values[-2][path])).max() > 1e-6


def test_a_stopped_variable_keeps_its_value_on_tensorflow():
    assert_the_bias_learns_then_stops(values_by_step())


def test_a_stopped_variable_keeps_its_value_on_jax():
    """JAX's training step calls the optimizer without its variables (``stateless_apply``)."""
    assert_the_bias_learns_then_stops(on_jax("from tests.test_whiten_bias import values_by_step", "values_by_step()"))


def test_the_airbench_whitening_bias_trains_its_epochs_and_the_kernel_never(tmp_path: Path):
    images = correlated_images(16)
    labels = np.arange(16, dtype=np.int32) % 2
    save_image_set(tmp_path / "train", ImageSet(images, labels, tuple(f"{n}.png" for n in range(16)), ("a", "b")))
    params = TrainParams(model="airbench", whiten=True, whiten_bias_epochs=1, optimizer="sgd", learning_rate=0.1,
                         batch_size=8, epochs=3)
    with open_split(tmp_path / "train") as split:
        model = build_from_params(params, split, 2)
    layer = model.get_layer(WHITENING_LAYER)
    compile_model(model, params, steps=2)
    assert isinstance(model.optimizer, ScaledRateSGD)
    assert model.optimizer.stop_steps == {layer.kernel.path: 0, layer.bias.path: 2}  # 1 epoch of 2 steps
    kernel, bias = np.asarray(layer.kernel.value).copy(), np.asarray(layer.bias.value).copy()
    model.fit(images.astype("float32"), labels, batch_size=8, epochs=1, shuffle=False, verbose=0)
    after_first = np.asarray(layer.bias.value).copy()
    assert np.abs(after_first - bias).max() > 1e-5
    model.fit(images.astype("float32"), labels, batch_size=8, epochs=2, shuffle=False, verbose=0)
    np.testing.assert_array_equal(np.asarray(layer.bias.value), after_first)
    np.testing.assert_array_equal(np.asarray(layer.kernel.value), kernel)


def test_the_stop_survives_a_checkpoint(tmp_path: Path):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1, name="only")(inputs))
    model.compile(optimizer=ScaledRateSGD(0.1, stop_steps={"only/bias": 7}), loss="mse")
    model.fit(np.zeros((4, 3), "float32"), np.zeros((4, 1), "float32"), verbose=0)
    model.save(tmp_path / "model.keras")  # as a resumable run's checkpoint keeps it
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    assert loaded.optimizer.stop_steps == {"only/bias": 7}


@pytest.mark.parametrize("text, message", [
    ({"model": "airbench", "whiten_bias_epochs": 3, "optimizer": "sgd"}, "train.whiten_bias_epochs.*train.whiten"),
    ({"model": "airbench", "whiten": True, "whiten_bias_epochs": 3}, "train.whiten_bias_epochs.*sgd"),
    ({"model": "airbench", "whiten": True, "whiten_bias_epochs": -1, "optimizer": "sgd"},
     "train.whiten_bias_epochs.*0 or more"),
    ({"one_cycle_end": 1.5}, "train.one_cycle_end.*from 0 to 1"),
])
def test_a_setting_the_method_cannot_take_is_refused_by_name(text, message):
    with pytest.raises(ParamsError, match=message):
        TrainParams(**text).validate("train")

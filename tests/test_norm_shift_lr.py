"""train.norm_shift_lr (imgclf.modeling.optim.ScaledRateSGD): the batch-norm shifts step that many
times as far as with plain SGD, every other variable as far, through Keras' own training step on
the TensorFlow and the JAX backend."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from imgclf.modeling.models import build_model
from imgclf.modeling.optim import ScaledRateSGD, make_optimizer, norm_shift_paths
from imgclf.modeling.params import TrainParams
from imgclf.plumbing.params import ParamsError
from tests.helpers import on_jax

RATE, SCALE = 0.01, 64.0


def changes_after_one_step(rate_scale: float | None) -> dict[str, list[float]]:
    """Each variable's change after one ``model.fit`` step of SGD (Nesterov momentum, weight decay)
    from the same start on the same batch: plain SGD when ``rate_scale`` is None."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    norm = keras.layers.BatchNormalization(scale=False, name="norm")
    model = keras.Model(inputs, keras.layers.Dense(1, name="last")(norm(keras.layers.Dense(2, name="first")(inputs))))
    rng = np.random.default_rng(0)
    features, targets = rng.normal(size=(8, 3)).astype("float32"), rng.normal(size=(8, 1)).astype("float32")
    # a start where the shift matters: the Dense weights and the shift all nonzero
    norm.beta.assign(np.array([0.5, -0.25], dtype="float32"))
    optimizer = (keras.optimizers.SGD(RATE, momentum=0.85, nesterov=True, weight_decay=0.1) if rate_scale is None
                 else ScaledRateSGD(RATE, momentum=0.85, nesterov=True, weight_decay=0.1,
                                    scaled_paths=norm_shift_paths(model), rate_scale=rate_scale))
    model.compile(optimizer=optimizer, loss="mse")
    before = {variable.path: np.asarray(variable.value).copy() for variable in model.trainable_variables}
    model.fit(features, targets, batch_size=8, epochs=1, shuffle=False, verbose=0)
    return {variable.path: (np.asarray(variable.value) - before[variable.path]).ravel().tolist()
            for variable in model.trainable_variables}


def assert_only_the_shift_steps_further(plain: dict[str, list[float]], scaled: dict[str, list[float]]) -> None:
    shift = "norm/beta"
    assert set(plain) == set(scaled) and len(plain) == 5  # two Dense kernels and biases, one shift
    # decay is decoupled: lr * wd * beta, the same in both; the gradient's part grows SCALE times
    decay = -RATE * 0.1 * np.array([0.5, -0.25])
    np.testing.assert_allclose(np.array(scaled[shift]) - decay, SCALE * (np.array(plain[shift]) - decay), rtol=1e-4)
    assert np.all(np.abs(np.array(plain[shift]) - decay) > 1e-4)  # the shift had a gradient to scale
    for path in plain:
        if path != shift:
            np.testing.assert_allclose(scaled[path], plain[path], rtol=1e-5, atol=1e-9)


def test_the_shifts_step_scale_times_as_far_on_tensorflow():
    assert_only_the_shift_steps_further(changes_after_one_step(None), changes_after_one_step(SCALE))


def test_the_shifts_step_scale_times_as_far_on_jax():
    """JAX's training step calls the optimizer without its variables (``stateless_apply``)."""
    plain, scaled = on_jax("from tests.test_norm_shift_lr import changes_after_one_step as changes",
                           f"[changes(None), changes({SCALE})]")
    assert_only_the_shift_steps_further(plain, scaled)


def test_the_airbench_network_s_six_shifts_are_found_and_only_they():
    model = build_model("airbench", (32, 32, 3), 10)
    paths = norm_shift_paths(model)
    assert len(paths) == 6 and all(path.endswith("/beta") for path in paths)
    assert sum(int(np.prod(variable.shape)) for variable in model.trainable_variables
               if variable.path in paths) == 2 * (64 + 256 + 256)  # airbench94's 1,152 shifts


def test_the_optimizer_is_chosen_by_the_param_and_survives_a_checkpoint(tmp_path: Path):
    assert type(make_optimizer(TrainParams(optimizer="sgd"), 0.1, ["a/beta"])) is keras.optimizers.SGD
    params = TrainParams(optimizer="sgd", norm_shift_lr=SCALE)
    model = build_model("fast_cnn", (16, 16, 3), 3)
    model.compile(optimizer=make_optimizer(params, 0.1, norm_shift_paths(model)),
                  loss="sparse_categorical_crossentropy")
    model.fit(np.zeros((4, 16, 16, 3), "float32"), np.zeros(4, "int32"), verbose=0)
    model.save(tmp_path / "model.keras")  # as a resumable run's checkpoint keeps it
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    assert isinstance(loaded.optimizer, ScaledRateSGD) and loaded.optimizer.rate_scale == SCALE
    assert loaded.optimizer.scaled_paths == norm_shift_paths(model) != []


@pytest.mark.parametrize("text, message", [
    ({"optimizer": "adam", "norm_shift_lr": 64.0}, "train.norm_shift_lr.*only sgd"),
    ({"optimizer": "sgd", "norm_shift_lr": 0.0}, "train.norm_shift_lr.*greater than 0"),
])
def test_a_rate_the_optimizer_cannot_take_is_refused_by_name(text, message):
    with pytest.raises(ParamsError, match=message):
        TrainParams(**text).validate("train")

"""train.optimizer muon (imgclf.modeling.optim.MuonSGD): the hidden convolutions' kernels step along
their momentum with its singular values made about 1, every other weight as SGD moves it, through
Keras' own training step on the TensorFlow and the JAX backend."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from imgclf.modeling.models import build_model
from imgclf.modeling.networks import WHITENING_LAYER
from imgclf.modeling.optim import NEWTON_SCHULZ, MuonSGD, make_optimizer, muon_paths, orthogonalise
from imgclf.modeling.params import TrainParams
from imgclf.plumbing.params import ParamsError
from tests.helpers import global_dtype_policy, on_jax

RATE, MUON_RATE, MUON_MOMENTUM, DECAY = 0.01, 0.05, 0.9, 0.1


def newton_schulz_of(singular_value: np.ndarray, steps: int = 5) -> np.ndarray:
    """What :func:`orthogonalise` makes of a singular value, already divided by the Frobenius norm."""
    a, b, c = NEWTON_SCHULZ
    for _ in range(steps):
        singular_value = a * singular_value + b * singular_value ** 3 + c * singular_value ** 5
    return singular_value


@pytest.mark.parametrize("shape", [(32, 216), (1152, 128), (9, 9)])
def test_orthogonalise_keeps_the_singular_vectors_and_moves_the_values_towards_one(shape):
    matrix = np.random.default_rng(0).normal(size=shape).astype("float32")
    matrix[:, 0] *= 50  # one direction far stronger than the others, as a gradient's often is
    left, values, right = np.linalg.svd(matrix, full_matrices=False)
    result = keras.ops.convert_to_numpy(orthogonalise(keras.ops.convert_to_tensor(matrix)))
    inside = left.T @ result @ right.T  # diagonal if the singular vectors are kept
    expected = newton_schulz_of(values / np.sqrt(np.sum(values ** 2)))
    np.testing.assert_allclose(inside, np.diag(expected), atol=2e-4)
    # from 1:20 and more to about 1: every direction moves about as far (Jordan's S' of 0.7 to 1.2)
    assert values.max() / values.min() > 20
    assert 0.6 < expected.min() and expected.max() < 1.25


def changes_after_one_step(optimizer_name: str) -> dict[str, list[float]]:
    """Each variable's change after one ``model.fit`` step from the same start on the same batch, of a
    network with a stem convolution (a bias), a hidden one (none; a batch norm after it) and a dense
    head: by ``gradient`` (SGD at rate 1, no momentum: minus the gradient), ``sgd`` (Nesterov momentum,
    weight decay) or ``muon`` (the same, the hidden kernel by Muon)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 2))
    stem = keras.layers.Conv2D(3, 2, name="stem")(inputs)
    hidden = keras.layers.Conv2D(4, 3, use_bias=False, name="hidden")(stem)
    hidden = keras.layers.BatchNormalization(name="norm")(hidden)
    outputs = keras.layers.Dense(2, name="head")(keras.layers.GlobalAveragePooling2D()(hidden))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    images, targets = rng.normal(size=(8, 6, 6, 2)).astype("float32"), rng.normal(size=(8, 2)).astype("float32")
    optimizer = {"gradient": lambda: keras.optimizers.SGD(1.0),
                 "sgd": lambda: keras.optimizers.SGD(RATE, momentum=0.85, nesterov=True, weight_decay=DECAY),
                 "muon": lambda: MuonSGD(RATE, momentum=0.85, nesterov=True, weight_decay=DECAY,
                                         muon_paths=muon_paths(model), muon_rate_scale=MUON_RATE / RATE,
                                         muon_momentum=MUON_MOMENTUM)}[optimizer_name]()
    model.compile(optimizer=optimizer, loss="mse")
    before = {variable.path: np.asarray(variable.value).copy() for variable in model.trainable_variables}
    model.fit(images, targets, batch_size=8, epochs=1, shuffle=False, verbose=0)
    changes = {variable.path: (np.asarray(variable.value) - before[variable.path]).ravel().tolist()
               for variable in model.trainable_variables}
    return {**changes, "start": before["hidden/kernel"].ravel().tolist()}


def assert_the_hidden_kernel_steps_by_muon(changes: dict[str, dict[str, list[float]]]) -> None:
    gradient, plain, muon = (changes[name] for name in ("gradient", "sgd", "muon"))
    kernel = "hidden/kernel"
    assert set(muon) == set(plain) == {kernel, "stem/kernel", "stem/bias", "norm/gamma", "norm/beta", "head/kernel",
                                       "head/bias", "start"}
    # the first Muon step: buffer = g, direction g + momentum * g; the kernel rescaled to a norm of
    # sqrt(4 filters) first, which also undoes the weight decay
    start = np.array(muon["start"]).reshape(-1, 4)
    direction = (1 + MUON_MOMENTUM) * -np.array(gradient[kernel]).reshape(-1, 4)
    left, values, right = np.linalg.svd(direction, full_matrices=False)
    step = left @ np.diag(newton_schulz_of(values / np.sqrt(np.sum(values ** 2)))) @ right
    after = start * 2 / np.linalg.norm(start) - MUON_RATE * step
    np.testing.assert_allclose(start + np.array(muon[kernel]).reshape(-1, 4), after, rtol=1e-4, atol=1e-6)
    for path in plain:  # every other weight as SGD moves it
        if path != kernel:
            np.testing.assert_allclose(muon[path], plain[path], rtol=1e-5, atol=1e-9)


def test_the_hidden_kernel_steps_by_muon_and_the_rest_by_sgd_on_tensorflow():
    assert_the_hidden_kernel_steps_by_muon({name: changes_after_one_step(name) for name in ("gradient", "sgd", "muon")})


def test_the_hidden_kernel_steps_by_muon_and_the_rest_by_sgd_on_jax():
    """JAX's training step calls the optimizer without its variables (``stateless_apply``)."""
    changes = on_jax("from tests.test_muon import changes_after_one_step as changes",
                     "{name: changes(name) for name in ('gradient', 'sgd', 'muon')}")
    assert_the_hidden_kernel_steps_by_muon(changes)


@pytest.mark.parametrize(("network", "count"), [("fast_cnn", 6), ("airbench", 6), ("resnet20", 21)])
def test_muon_moves_the_hidden_convolutions_and_not_the_stem_nor_the_head(network, count):
    model = build_model(network, (32, 32, 3), 10)
    paths = muon_paths(model)
    kernels = {variable.path: variable for variable in model.trainable_variables}
    assert len(paths) == count and all(len(kernels[path].shape) == 4 for path in paths)
    stem = model.get_layer(WHITENING_LAYER) if network == "airbench" else None
    assert stem is None or stem.kernel.path not in paths
    assert not any(path.startswith("dense") or "head" in path for path in paths)


def test_the_optimizer_is_chosen_by_the_param_and_a_checkpoint_keeps_its_momentum(tmp_path: Path):
    params = TrainParams(optimizer="muon", model="fast_cnn", learning_rate=0.05, muon_learning_rate=0.1)
    model = build_model("fast_cnn", (16, 16, 3), 3)
    model.compile(optimizer=make_optimizer(params, 0.05, muons=muon_paths(model)),
                  loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    model.fit(rng.normal(size=(4, 16, 16, 3)).astype("float32"), np.arange(4) % 3, verbose=0)
    model.save(tmp_path / "model.keras")  # as a resumable run's checkpoint keeps it
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    assert isinstance(loaded.optimizer, MuonSGD) and loaded.optimizer.muon_rate_scale == pytest.approx(2.0)
    assert loaded.optimizer.muon_paths == muon_paths(model) != []
    saved = [np.asarray(buffer.value) for buffer in model.optimizer.muon_buffers if buffer is not None]
    restored = [np.asarray(buffer.value) for buffer in loaded.optimizer.muon_buffers if buffer is not None]
    assert len(saved) == len(restored) == 6 and all(np.array_equal(a, b) for a, b in zip(saved, restored, strict=True))
    assert all(np.abs(buffer).max() > 0 for buffer in saved)


@pytest.mark.parametrize("sgd_momentum", [0.9, 0.0])
def test_each_muon_kernel_has_one_momentum_buffer(sgd_momentum):
    """SGD's own slot holds a Muon kernel's momentum, so the optimizer keeps no more state than SGD;
    SGD without momentum has no slots, and Muon then keeps its own."""
    params = TrainParams(optimizer="muon", model="fast_cnn", momentum=sgd_momentum)
    model = build_model("fast_cnn", (16, 16, 3), 3)
    optimizer = make_optimizer(params, 0.05, muons=muon_paths(model))
    optimizer.build(model.trainable_variables)
    sgd = keras.optimizers.SGD(0.05, momentum=sgd_momentum)
    sgd.build(model.trainable_variables)
    kernels = len(muon_paths(model))
    assert kernels == 6 == sum(buffer is not None for buffer in optimizer.muon_buffers)
    assert len(optimizer.variables) == len(sgd.variables) + (0 if sgd_momentum else kernels)


@pytest.mark.parametrize(("policy", "dtype"), [("float32", "float32"), ("mixed_bfloat16", "bfloat16"),
                                               ("mixed_float16", "float32")])
def test_newton_schulz_runs_in_bfloat16_where_the_model_computes_in_it(policy, dtype):
    """As airbench94_muon's; float16's narrow range is left out."""
    with global_dtype_policy(policy):
        optimizer = make_optimizer(TrainParams(optimizer="muon", model="fast_cnn"), 0.05, muons=["a/kernel"])
    assert optimizer.newton_schulz_dtype == dtype


def test_a_bfloat16_step_is_the_float32_one_to_bfloat16_s_precision():
    """The Newton-Schulz steps of a kernel's direction in bfloat16 against float32: the step's size
    is what Muon fixes, so it must come out of bfloat16 the same to about its 3 significant digits."""
    direction = keras.ops.convert_to_tensor(np.random.default_rng(1).normal(size=(1152, 128)).astype("float32"))
    exact = keras.ops.convert_to_numpy(orthogonalise(direction))
    rounded = keras.ops.convert_to_numpy(keras.ops.cast(orthogonalise(keras.ops.cast(direction, "bfloat16")),
                                                        "float32"))
    assert np.linalg.norm(rounded - exact) / np.linalg.norm(exact) < 0.05


@pytest.mark.parametrize("text, message", [
    ({"optimizer": "muon", "model": "simple_cnn"},
     r"train\.optimizer = 'muon'.*train\.model is one of resnet20, resnet56, fast_cnn, airbench, airbench95"),
    ({"optimizer": "muon", "model": "fast_cnn", "muon_momentum": 1.0}, r"train\.muon_momentum"),
    ({"optimizer": "muon", "model": "fast_cnn", "muon_learning_rate": 0.0}, r"train\.muon_learning_rate"),
])
def test_a_muon_setting_that_cannot_work_is_refused_by_name(text, message):
    with pytest.raises(ParamsError, match=message):
        TrainParams(**text).validate("train")


def test_muon_takes_sgd_s_batch_norm_shift_rate():
    TrainParams(optimizer="muon", model="airbench", norm_shift_lr=64.0).validate("train")


@pytest.mark.slow
def test_a_muon_run_learns_and_an_interrupted_one_resumes_to_the_same_weights(tmp_path: Path):
    """``fast_cnn`` on 16x16 colour images by ``train()`` as the stage calls it; stopped after its
    third epoch and resumed from the checkpoint of the second, momentum buffers and all."""
    from imgclf.training.checkpoints import Checkpoints, fingerprint
    from tests.test_training import InterruptAfter, SimulatedInterruptError, assert_same_weights, colour_set, train_once

    params = TrainParams(model="fast_cnn", optimizer="muon", epochs=4, batch_size=8, learning_rate=0.05,
                         schedule="one_cycle", seed=3, resume=True)
    uninterrupted, whole, *_ = train_once(params, side=16)
    assert max(whole.history["val_accuracy"]) > 0.8
    key = fingerprint(params, colour_set(48, 0, side=16))
    with pytest.raises(SimulatedInterruptError):
        train_once(params, sinks=[InterruptAfter(3)], checkpoints=Checkpoints(tmp_path, key), side=16)
    resumed, result, *_ = train_once(params, checkpoints=Checkpoints(tmp_path, key), side=16)
    assert_same_weights(resumed, uninterrupted)
    assert result.history["val_loss"] == whole.history["val_loss"]

"""The CIFAR-10 speedrun's starting weights (imgclf.modeling.initialisation) and network: what each
computes, checked against its definition."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from imgclf.data.dataset import ImageSet, open_split, save_image_set
from imgclf.modeling.initialisation import (
    WHITENING_EPS,
    identity_kernel,
    initialise,
    patches_of,
    whitening_weights,
)
from imgclf.modeling.models import build_from_params, build_model
from imgclf.modeling.networks import WHITENING_LAYER
from imgclf.modeling.params import TrainParams


def correlated_images(count: int, side: int = 32, seed: int = 0) -> np.ndarray:
    """uint8 images whose neighbouring pixels and channels are correlated, as in photos."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(count, side + 1, side + 1, 3))
    smooth = noise[:, 1:, 1:] + noise[:, :-1, 1:] + noise[:, 1:, :-1] + 0.5 * noise[:, 1:, 1:].mean(-1, keepdims=True)
    return np.clip(128 + 30 * smooth, 0, 255).astype(np.uint8)


def test_a_patch_row_is_in_the_order_of_a_keras_kernel():
    images = np.random.default_rng(1).normal(size=(2, 5, 6, 3)).astype(np.float32)
    kernel = np.random.default_rng(2).normal(size=(2, 2, 3, 4)).astype(np.float32)
    convolved = keras.ops.convert_to_numpy(keras.ops.conv(images, kernel, padding="valid"))
    assert patches_of(images, 2).shape == (2 * 4 * 5, 12)
    np.testing.assert_allclose(patches_of(images, 2) @ kernel.reshape(12, 4), convolved.reshape(-1, 4), atol=1e-5)


def test_whitened_patches_have_an_identity_covariance_and_no_mean():
    patches = patches_of(correlated_images(50).astype(np.float64) / 255, 2)
    mean, covariance = patches.mean(axis=0), np.cov(patches, rowvar=False, bias=True)
    assert np.abs(covariance - np.diag(np.diag(covariance))).max() > 0.1 * covariance.max()  # far from white
    filters, bias = whitening_weights(mean, covariance, eps=0.0)
    assert filters.shape == (12, 24) and bias.shape == (24,)
    whitened = patches @ filters[:, :12] + bias[:12]
    np.testing.assert_allclose(np.cov(whitened, rowvar=False, bias=True), np.eye(12), atol=1e-6)
    np.testing.assert_allclose(whitened.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(filters[:, 12:], -filters[:, :12])  # each filter and its negative
    # with eps, each direction's variance is λ / (λ + eps): the weakest directions are damped
    damped, _ = whitening_weights(mean, covariance, eps=WHITENING_EPS)
    eigenvalues = np.sort(np.linalg.eigvalsh(covariance))[::-1]
    np.testing.assert_allclose(np.diag(np.cov(patches @ damped[:, :12], rowvar=False, bias=True)),
                               eigenvalues / (eigenvalues + WHITENING_EPS), rtol=1e-6)


def test_train_whiten_makes_the_first_layer_whiten_the_training_split(tmp_path):
    images = correlated_images(120)
    save_image_set(tmp_path / "train", ImageSet(images, np.arange(120, dtype=np.int32) % 3,
                                                tuple(f"{n}.png" for n in range(120)), ("a", "b", "c")))
    params = TrainParams(model="airbench", whiten=True)
    with open_split(tmp_path / "train") as split:
        model = build_from_params(params, split, 3)
    layer = model.get_layer(WHITENING_LAYER)
    assert not layer.trainable  # frozen, as airbench's
    whitened = keras.ops.convert_to_numpy(keras.Model(model.inputs[0], layer.output)(images.astype("float32")))
    first_half = whitened[..., :12].reshape(-1, 12)
    covariance = np.cov(first_half, rowvar=False, bias=True)
    off_diagonal = covariance - np.diag(np.diag(covariance))
    assert np.abs(off_diagonal).max() < 1e-3 and np.abs(first_half.mean(axis=0)).max() < 1e-3
    assert np.diag(covariance).min() > 0.8 and np.diag(covariance).max() < 1.0 + 1e-4  # λ / (λ + eps)


def test_an_identity_kernel_passes_its_first_channels_through():
    kernel = np.random.default_rng(0).normal(size=(3, 3, 4, 6)).astype(np.float32)
    images = np.random.default_rng(1).normal(size=(2, 7, 7, 4)).astype(np.float32)
    outputs = keras.ops.convert_to_numpy(keras.ops.conv(images, identity_kernel(kernel), padding="same"))
    np.testing.assert_allclose(outputs[..., :4], images, atol=1e-6)
    np.testing.assert_array_equal(identity_kernel(kernel)[..., 4:], kernel[..., 4:])  # the others as built


def test_train_identity_init_starts_every_3x3_convolution_as_the_identity():
    keras.utils.set_random_seed(0)
    model = build_model("airbench", (32, 32, 3), 10, seed=0)
    initialise(model, TrainParams(model="airbench", identity_init=True), train_split=None)
    convolutions = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convolutions) == 7
    for layer in convolutions[1:]:
        kernel = keras.ops.convert_to_numpy(layer.kernel)
        channels = min(kernel.shape[2:])
        np.testing.assert_array_equal(kernel[1, 1, np.arange(channels), np.arange(channels)], 1.0)
        assert np.count_nonzero(kernel[..., :channels]) == channels
    assert np.count_nonzero(keras.ops.convert_to_numpy(convolutions[0].kernel) == 1.0) == 0  # not the 2x2 layer


@pytest.mark.parametrize("name, block_widths, trained_parameters", [
    # airbench94's trained parameters (whitening 312, convolutions, batch norm shifts 1,152, the
    # 256x10 linear layer); airbench95's the same with its wider blocks (shifts 1,792, 384x10)
    ("airbench", (64, 256, 256), 1_971_640),
    ("airbench95", (128, 384, 384), 4_604_728),
])
def test_the_airbench_networks_are_airbench94s_and_airbench95s(name, block_widths, trained_parameters):
    model = build_model(name, (32, 32, 3), 10)
    assert model.get_layer(WHITENING_LAYER).kernel.shape == (2, 2, 3, 24)
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 6 and all(not norm.scale and norm.momentum == 0.6 for norm in norms)
    widths = [layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert widths == [24] + [width for width in block_widths for _ in range(2)]
    # and the bias of our classifier
    assert sum(int(np.prod(weight.shape)) for weight in model.trainable_weights) == trained_parameters + 10


@pytest.mark.parametrize("text, message", [
    ({"model": "simple_cnn", "whiten": True}, "train.whiten.*airbench"),
    ({"model": "transfer", "identity_init": True}, "train.identity_init.*pretrained"),
])
def test_a_method_the_network_cannot_take_is_refused_by_name(text, message):
    from imgclf.plumbing.params import ParamsError

    with pytest.raises(ParamsError, match=message):
        TrainParams(**text).validate("train")

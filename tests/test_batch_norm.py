"""imgclf.modeling.batch_norm: the fused training call computes what Keras' BatchNormalization computes."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from imgclf.modeling.batch_norm import BatchNormalization
from tests.helpers import global_dtype_policy


def twin_layers(shape: tuple[int, ...], **settings) -> tuple[keras.layers.Layer, keras.layers.Layer]:
    """Keras' layer and ours, built alike, their gamma and beta set away from 1 and 0."""
    keras_layer, fused_layer = keras.layers.BatchNormalization(**settings), BatchNormalization(**settings)
    generator = np.random.default_rng(1)
    for layer in (keras_layer, fused_layer):
        layer.build(shape)
    for keras_variable, fused_variable in zip(keras_layer.weights, fused_layer.weights, strict=True):
        value = generator.uniform(0.5, 1.5, keras_variable.shape).astype("float32")
        keras_variable.assign(value)
        fused_variable.assign(value)
    return keras_layer, fused_layer


def train_call(layer: keras.layers.Layer, images: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """The layer's training output and the gradients of a weighted sum of it: the input's, then the weights'."""
    inputs = tf.constant(images)
    weights = tf.constant(np.random.default_rng(2).normal(size=images.shape).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = layer(inputs, training=True)
        loss = tf.reduce_sum(tf.cast(outputs, "float32") * weights)
    gradients = tape.gradient(loss, [inputs, *layer.trainable_weights])
    return keras.ops.convert_to_numpy(tf.cast(outputs, "float32")), [g.numpy() for g in gradients]


@pytest.mark.parametrize("settings", [{}, {"momentum": 0.6, "epsilon": 1e-12, "scale": False}],
                         ids=["keras-defaults", "airbench"])
def test_a_training_step_gives_keras_outputs_gradients_and_moving_statistics(settings):
    images = np.random.default_rng(0).normal(3.0, 2.0, (4, 3, 5, 6)).astype("float32")
    # a channel of nearly one value (a variance of 4e-6): the epsilon of 1e-12 must not become the
    # 1.001e-5 that tf.nn.fused_batch_norm would make of it, which would shrink that channel 1.9 times
    images[..., 0] = 1.5 + 1e-3 * images[..., 0]
    keras_layer, fused_layer = twin_layers(images.shape, **settings)

    keras_outputs, keras_gradients = train_call(keras_layer, images)
    fused_outputs, fused_gradients = train_call(fused_layer, images)

    np.testing.assert_allclose(fused_outputs, keras_outputs, rtol=1e-3, atol=1e-3)
    for fused_gradient, keras_gradient in zip(fused_gradients, keras_gradients, strict=True):
        np.testing.assert_allclose(fused_gradient, keras_gradient, rtol=1e-3, atol=1e-3)
    # 60 values a channel: Bessel's correction would raise the batch's variance by 1.7%, and so the moving
    # variance by 0.02% (momentum 0.99) or 0.7% (0.6), beyond these tolerances either way
    np.testing.assert_allclose(fused_layer.moving_mean.numpy(), keras_layer.moving_mean.numpy(), rtol=1e-6)
    np.testing.assert_allclose(fused_layer.moving_variance.numpy(), keras_layer.moving_variance.numpy(), rtol=1e-5)


def test_a_training_call_on_tensorflow_on_a_cpu_runs_the_fused_kernel_and_inference_does_not():
    layer = BatchNormalization()
    layer.build((2, 3, 3, 4))

    def operations(training: bool) -> set[str]:
        graph = tf.function(lambda images: layer(images, training=training)).get_concrete_function(
            tf.TensorSpec((2, 3, 3, 4), "float32")).graph
        return {operation.type for operation in graph.get_operations()}

    assert "FusedBatchNormV3" in operations(training=True)
    assert "FusedBatchNormV3" not in operations(training=False)


def test_a_single_value_a_channel_leaves_a_variance_of_0_not_a_nan():
    keras_layer, fused_layer = twin_layers((1, 1, 1, 3))
    images = np.full((1, 1, 1, 3), 2.0, dtype="float32")

    keras_outputs, _ = train_call(keras_layer, images)
    fused_outputs, _ = train_call(fused_layer, images)

    np.testing.assert_allclose(fused_outputs, keras_outputs, rtol=1e-5)
    np.testing.assert_allclose(fused_layer.moving_variance.numpy(), keras_layer.moving_variance.numpy(), rtol=1e-6)


def test_in_bfloat16_it_gives_keras_outputs_in_bfloat16():
    images = np.random.default_rng(0).normal(0.0, 1.0, (8, 4, 4, 16)).astype("float32")
    with global_dtype_policy("mixed_bfloat16"):
        keras_layer, fused_layer = twin_layers(images.shape)
        bfloat16_images = tf.cast(images, "bfloat16").numpy()
        fused_dtype = BatchNormalization()(bfloat16_images, training=True).dtype
        keras_outputs, _ = train_call(keras_layer, bfloat16_images)
        fused_outputs, _ = train_call(fused_layer, bfloat16_images)

    assert keras.backend.standardize_dtype(fused_dtype) == "bfloat16"
    np.testing.assert_allclose(fused_outputs, keras_outputs, atol=2 ** -7 * 4)  # a bfloat16 step at 4
    np.testing.assert_allclose(fused_layer.moving_mean.numpy(), keras_layer.moving_mean.numpy(), rtol=1e-5)


def test_inference_and_masked_calls_are_keras_own():
    images = np.random.default_rng(0).normal(size=(2, 3, 3, 4)).astype("float32")
    keras_layer, fused_layer = twin_layers(images.shape)

    np.testing.assert_array_equal(fused_layer(images, training=False), keras_layer(images, training=False))
    assert not fused_layer._fuses(tf.constant(images), True, tf.ones((2, 3, 3)))
    assert not fused_layer._fuses(tf.constant(images[:, 0]), True, None)  # not an image: rank 3


def test_a_models_configuration_brings_the_layer_back_with_its_settings():
    inputs = keras.Input((4, 4, 2))
    model = keras.Model(inputs, BatchNormalization(momentum=0.6, epsilon=1e-12, scale=False)(inputs))
    loaded = keras.models.model_from_json(model.to_json())
    layer = loaded.layers[-1]
    assert isinstance(layer, BatchNormalization)
    assert (layer.momentum, layer.epsilon, layer.scale) == (0.6, 1e-12, False)

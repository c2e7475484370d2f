"""imgclf.modeling.gelu: the compiled training call computes Keras' exact GELU and its gradient."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from imgclf.modeling.gelu import GELU


def values_and_gradient(function, inputs: tf.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``function(inputs)`` and the gradient of a weighted sum of it by the inputs, both in float32."""
    weights = tf.constant(np.random.default_rng(2).normal(size=inputs.shape).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = function(inputs)
        loss = tf.reduce_sum(tf.cast(outputs, "float32") * weights)
    gradient = tape.gradient(loss, inputs)
    return tf.cast(outputs, "float32").numpy(), tf.cast(gradient, "float32").numpy()


def sample(dtype: str) -> tf.Tensor:
    """Values from -9 to 9, where the GELU is 0 and x at the two ends and bends in between."""
    return tf.cast(tf.constant(np.random.default_rng(0).normal(0.0, 3.0, (4, 5, 5, 8)).astype("float32")), dtype)


def test_a_training_call_gives_keras_gelu_and_its_gradient_in_float32():
    inputs = sample("float32")

    ours = values_and_gradient(lambda x: GELU()(x, training=True), inputs)
    keras_own = values_and_gradient(lambda x: keras.activations.gelu(x, approximate=False), inputs)

    np.testing.assert_allclose(ours[0], keras_own[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours[1], keras_own[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("training", [True, False])
def test_a_call_in_bfloat16_is_as_close_to_the_exact_gelu_as_keras_chain_or_closer(training):
    """In training and in inference (a mixed-precision run's validation, its heatmaps in Keras)."""
    inputs = sample("bfloat16")
    exact = values_and_gradient(lambda x: keras.activations.gelu(x, approximate=False), tf.cast(inputs, "float32"))

    ours = values_and_gradient(lambda x: GELU(dtype="bfloat16")(x, training=training), inputs)
    keras_own = values_and_gradient(lambda x: keras.activations.gelu(x, approximate=False), inputs)

    assert GELU(dtype="bfloat16")(inputs, training=training).dtype == tf.bfloat16
    for our_values, keras_values, exact_values in zip(ours, keras_own, exact, strict=True):
        # bfloat16 keeps 8 bits: one rounding of the result is 2^-8 of it; Keras' chain rounds after each step
        np.testing.assert_allclose(our_values, exact_values, rtol=2 ** -7, atol=2 ** -7)
        assert np.abs(our_values - exact_values).max() <= np.abs(keras_values - exact_values).max()


@pytest.mark.parametrize("training", [False, None])
def test_inference_in_float32_is_keras_gelu_itself(training):
    """The graph that tf2onnx converts, for a model trained in mixed precision too (its float32 copy)."""
    inputs = sample("float32")

    np.testing.assert_array_equal(GELU()(inputs, training=training).numpy(),
                                  keras.activations.gelu(inputs, approximate=False).numpy())


def test_on_tensorflow_on_a_cpu_training_and_half_precision_inference_run_compiled_loops():
    def compiled_calls(training: bool, dtype: str = "float32") -> int:
        layer = GELU(dtype=dtype)
        graph = tf.function(lambda images: layer(images, training=training)).get_concrete_function(
            tf.TensorSpec((2, 3, 3, 4), dtype)).graph
        return sum(1 for operation in graph.get_operations()
                   if operation.type.endswith("PartitionedCall") and operation.node_def.attr["_XlaMustCompile"].b)

    assert compiled_calls(training=True) == 1
    assert compiled_calls(training=False) == 0  # float32 inference: the graph tf2onnx converts
    assert compiled_calls(training=True, dtype="bfloat16") == 1
    assert compiled_calls(training=False, dtype="bfloat16") == 1


def test_a_model_with_the_layer_comes_back_from_its_json():
    inputs = keras.Input((3, 3, 2))
    model = keras.Model(inputs, GELU(name="gelu_layer")(inputs))

    restored = keras.models.model_from_json(model.to_json())

    assert isinstance(restored.get_layer("gelu_layer"), GELU)
    images = sample("float32")[:, :3, :3, :2]
    np.testing.assert_array_equal(restored(images).numpy(), model(images).numpy())

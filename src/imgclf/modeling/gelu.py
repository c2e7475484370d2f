"""The exact GELU, whose training step on TensorFlow on a CPU is two loops that XLA compiles.

Keras' ``gelu`` is ``0.5 x (1 + erf(x / sqrt 2))``. On TensorFlow it is a chain of generic
operations, and its gradient is a longer chain. Each operation reads and writes the whole
activation: on an AMD EPYC the GELUs took 21% of a bfloat16 training step of the airbench network.
For one bfloat16 activation of 512 images of 15x15x128, the forward and backward passes take
89 ms through Keras' chain and 24 ms as two compiled loops, and airbench95's training steps run
1.32 times as fast (Intel Xeon with AMX, 2 cores; benchmarks/README.md, "GELU in two compiled
loops").

:class:`GELU` computes the same function. On TensorFlow on a CPU, in training, it runs two
functions that XLA compiles into one loop each:

- forward: ``x * Phi(x)``, where ``Phi(x) = 0.5 erfc(-x / sqrt 2)`` is the normal distribution;
- backward: ``dy * (Phi(x) + x * phi(x))``, where ``phi`` is the normal density. This is the
  exact derivative of ``x Phi(x)``.

Both compute in float32 whatever the input's type, and return the input's type. Keras' chain in
bfloat16 rounds after every operation, so its result is a little less exact than this one.

Inference in bfloat16 or float16 (the validation of a mixed-precision run, its heatmaps in Keras,
``imgclf predict --engine keras``) takes the compiled forward loop too: ``fast_cnn``'s forward pass
over 64x64 images in bfloat16 runs about twice as fast with it (benchmarks/README.md, "GELU in two
compiled loops").

Everywhere else (inference in float32, JAX and PyTorch, TensorFlow with a GPU, where the whole step
is compiled by XLA already with ``jit_compile: auto``) it is Keras' ``gelu`` unchanged. Inference in
float32 is left alone on purpose: it is the graph that ``tf2onnx`` converts, for a model trained in
mixed precision too (as its float32 copy, :func:`imgclf.serving.export.serving_copy`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import keras

from imgclf.modeling.backend import tensorflow_on_a_cpu

COMPILED_DTYPES = ("bfloat16", "float16", "float32")  # the types the compiled loops take


@functools.cache
def _compiled_gelu() -> Callable[[Any], Any]:
    """The GELU with its compiled forward and backward loops: built once per process."""
    import tensorflow as tf

    inverse_sqrt_2 = 0.7071067811865476
    inverse_sqrt_2_pi = 0.3989422804014327

    @tf.function(jit_compile=True)
    def forward(inputs: tf.Tensor) -> tf.Tensor:
        values = tf.cast(inputs, "float32")
        return tf.cast(values * (0.5 * tf.math.erfc(-values * inverse_sqrt_2)), inputs.dtype)

    @tf.function(jit_compile=True)
    def backward(inputs: tf.Tensor, upstream: tf.Tensor) -> tf.Tensor:
        values = tf.cast(inputs, "float32")
        cdf = 0.5 * tf.math.erfc(-values * inverse_sqrt_2)
        pdf = inverse_sqrt_2_pi * tf.exp(-0.5 * values * values)
        return tf.cast(tf.cast(upstream, "float32") * (cdf + values * pdf), inputs.dtype)

    @tf.custom_gradient
    def gelu(inputs: tf.Tensor) -> tuple[tf.Tensor, Callable[[tf.Tensor], tf.Tensor]]:
        return forward(inputs), lambda upstream: backward(inputs, upstream)

    return gelu


@keras.saving.register_keras_serializable(package="imgclf")
class GELU(keras.layers.Layer):
    """The exact GELU as a layer; its training call on TensorFlow on a CPU is compiled (module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.supports_masking = True

    def _compiles(self, inputs: Any, training: Any) -> bool:
        """Whether this call takes the compiled loops: in training, and in half precision's inference
        (the module's docstring says why)."""
        dtype = keras.backend.standardize_dtype(inputs.dtype)
        return tensorflow_on_a_cpu() and dtype in COMPILED_DTYPES and (bool(training) or dtype != "float32")

    def call(self, inputs: Any, training: Any = None) -> Any:
        if self._compiles(inputs, training):
            return _compiled_gelu()(inputs)
        return keras.activations.gelu(inputs, approximate=False)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

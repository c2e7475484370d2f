"""Batch normalisation that trains through TensorFlow's fused kernel on the TensorFlow backend.

Keras 3's ``BatchNormalization`` trains through generic operations: it casts its input to float32,
takes the mean and the variance in passes of their own, normalises, casts back, and its gradient
goes back through each of these. Every pass reads and writes the whole activation. TensorFlow has
one kernel for the whole training step, ``FusedBatchNormV3``, and one for its gradient, both run
by oneDNN on a CPU. On an AMX Xeon it trains airbench95 1.16 times as fast in bfloat16 and 1.31
times in float32 (benchmarks/README.md, "Fused batch norm").

:class:`BatchNormalization` is Keras' layer with that one change: on TensorFlow on a CPU, in
training, for an input with its channels last, it normalises with the fused kernel. It computes what Keras' layer
computes, in float32 whatever the input's precision:

- it normalises by the batch's mean and its biased variance, with the layer's own epsilon (the
  Python wrapper ``tf.nn.fused_batch_norm`` would raise an epsilon under 1.001e-5 to it; the raw op
  does not);
- it moves the moving statistics by Keras' rule, with the biased variance. The kernel returns the
  variance with Bessel's correction, which is taken off again.

Everywhere else (inference, JAX and PyTorch, a mask, renorm, synchronised batch norm, channels
first, and TensorFlow with a GPU, where cuDNN's kernel has an epsilon floor of its own and nothing
was measured) it is Keras' layer unchanged. Inference is left alone on purpose: the saved model's
inference graph, which ``tf2onnx`` converts, is the one Keras' layer gives.
"""

from __future__ import annotations

from typing import Any

import keras

from imgclf.modeling.backend import tensorflow_on_a_cpu

FUSED_DTYPES = ("float16", "bfloat16", "float32")  # the input types FusedBatchNormV3 takes


@keras.saving.register_keras_serializable(package="imgclf")
class BatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` whose training call on TensorFlow is one fused kernel."""

    def _fuses(self, inputs: Any, training: Any, mask: Any) -> bool:
        """Whether this call takes the fused kernel (the module's docstring says when)."""
        return (tensorflow_on_a_cpu() and bool(training) and self.trainable and mask is None and not self.renorm
                and not self.synchronized and len(inputs.shape) == 4 and self.axis in (-1, 3)
                and keras.backend.standardize_dtype(inputs.dtype) in FUSED_DTYPES)

    def call(self, inputs: Any, training: Any = None, mask: Any = None) -> Any:
        if not self._fuses(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = inputs.shape[-1]
        scale = tf.cast(self.gamma, "float32") if self.scale else tf.ones([channels], "float32")
        offset = tf.cast(self.beta, "float32") if self.center else tf.zeros([channels], "float32")
        empty = tf.constant([], "float32")  # training takes no mean and variance in
        outputs, mean, unbiased_variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=inputs, scale=scale, offset=offset, mean=empty, variance=empty, epsilon=self.epsilon,
            exponential_avg_factor=1.0, data_format="NHWC", is_training=True)
        count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), "float32")  # values per channel
        variance = tf.where(count > 1, unbiased_variance * (count - 1) / tf.maximum(count, 1), 0.0)
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return tf.cast(outputs, self.compute_dtype)

"""Starting weights from the CIFAR-10 speedruns (airbench, Jordan 2024), applied after a network is built.

- **Whitening** (``train.whiten``): the network's first convolution, a small patch-sized layer
  (:data:`imgclf.modeling.networks.WHITENING_LAYER`), starts as the whitening transform of the
  training split's patches: each filter an eigenvector of the patches' covariance divided by the
  square root of its eigenvalue (plus ``eps``), once as it is and once negated (the GELU after it
  keeps both signs), its bias centring the patches; the layer is then frozen, or with
  ``train.whiten_bias_epochs`` its kernel alone, the bias training for that many epochs (airbench's
  3; :func:`whitening_stop_steps`). The first layer sees decorrelated, unit-variance inputs from the
  first step.
- **Identity** (``train.identity_init``): each later convolution with an odd square kernel starts as
  the identity in its first ``min(in, out)`` filters (PyTorch's ``dirac_``), the rest as built: the
  block passes its input through until training finds something better.

Pure NumPy on a few thousand images: :func:`whitening_weights` and :func:`identity_kernel` compute,
:func:`initialise` finds the layers and sets them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from imgclf.modeling.networks import WHITENING_LAYER

if TYPE_CHECKING:
    import keras

    from imgclf.data.dataset import Split
    from imgclf.modeling.params import TrainParams

WHITENING_IMAGES = 5000  # training images whose patches give the covariance (airbench's 5,000)
WHITENING_EPS = 5e-4  # added to each eigenvalue: the noisiest directions are not blown up
BLOCK = 250  # images turned into patches at a time: 250 at 32x32 hold 2 MB of patches, float64


def patches_of(images: np.ndarray, size: int) -> np.ndarray:
    """Every ``size`` x ``size`` patch of ``images`` (count, height, width, channels), stride 1, as rows
    flattened in (row, column, channel) order, the order of a Keras convolution's kernel."""
    windows = np.lib.stride_tricks.sliding_window_view(images, (size, size), axis=(1, 2))
    # (count, rows, columns, channels, size, size) -> (count, rows, columns, size, size, channels)
    return np.moveaxis(windows, 3, -1).reshape(-1, size * size * images.shape[-1])


def whitening_weights(mean: np.ndarray, covariance: np.ndarray, eps: float = WHITENING_EPS
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(filters, bias) that whiten patches of this mean and covariance: ``(patch - mean) @ W`` has
    covariance ``diag(λ / (λ + eps))``, the identity where ``eps`` is small beside the eigenvalues
    ``λ``. The filters are ``W`` and then ``-W``, in the columns of (patch size, 2 x patch size)."""
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1]  # the strongest direction first
    scaled = eigenvectors[:, order] / np.sqrt(np.maximum(eigenvalues[order], 0.0) + eps)
    filters = np.concatenate([scaled, -scaled], axis=1)
    return filters, -mean @ filters


def patch_statistics(split: Split, size: int, rows: np.ndarray, prepare: keras.Model | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64) of the ``size`` x ``size`` patches of ``split``'s images ``rows``,
    read ``BLOCK`` at a time; ``prepare`` (the model's layers in front of the first convolution, in
    inference mode) turns pixels into what that convolution sees."""
    total: np.ndarray | float = 0.0
    outer: np.ndarray | float = 0.0
    count = 0
    for start in range(0, len(rows), BLOCK):
        images = split.read(rows[start:start + BLOCK]).astype(np.float32)
        if prepare is not None:
            import keras

            images = keras.ops.convert_to_numpy(prepare(images, training=False))
        patches = patches_of(images.astype(np.float64), size)
        total = total + patches.sum(axis=0)
        outer = outer + patches.T @ patches
        count += len(patches)
    mean = np.asarray(total) / count
    return mean, np.asarray(outer) / count - np.outer(mean, mean)


def identity_kernel(kernel: np.ndarray) -> np.ndarray:
    """``kernel`` (height, width, in, out) with its first ``min(in, out)`` filters the identity: filter
    ``o`` passes input channel ``o`` through its centre and nothing else."""
    height, width, channels_in, channels_out = kernel.shape
    result = kernel.copy()
    for channel in range(min(channels_in, channels_out)):
        result[:, :, :, channel] = 0.0
        result[height // 2, width // 2, channel, channel] = 1.0
    return result


def whitening_stop_steps(model: keras.Model, params: TrainParams, steps_per_epoch: int) -> dict[str, int]:
    """``train.whiten_bias_epochs``: the step from which each of the whitening layer's variables keeps
    its value (the kernel from the first, the bias after that many epochs), for the optimizer
    (:class:`imgclf.modeling.optim.ScaledRateSGD`); none without it."""
    if not params.whiten_bias_epochs:
        return {}
    layer = model.get_layer(WHITENING_LAYER)
    return {layer.kernel.path: 0, layer.bias.path: params.whiten_bias_epochs * steps_per_epoch}


def initialise(model: keras.Model, params: TrainParams, train_split: Split | None) -> None:
    """Apply ``train.identity_init`` and ``train.whiten`` (from the patches of ``train_split``) to the
    freshly built ``model``."""
    import keras

    convolutions = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    if params.identity_init:
        for layer in convolutions:
            height, width = layer.kernel.shape[:2]
            if layer.name != WHITENING_LAYER and height == width and height % 2 == 1:
                layer.kernel.assign(identity_kernel(keras.ops.convert_to_numpy(layer.kernel)))
    if params.whiten:
        if train_split is None:
            raise ValueError("train.whiten needs the training split's images")
        layer = model.get_layer(WHITENING_LAYER)
        size = int(layer.kernel.shape[0])
        prepare = keras.Model(model.inputs[0], layer.input)
        chosen = np.random.default_rng(params.seed).choice(len(train_split), min(WHITENING_IMAGES, len(train_split)),
                                                           replace=False)
        mean, covariance = patch_statistics(train_split, size, np.sort(chosen), prepare)
        filters, bias = whitening_weights(mean, covariance)
        layer.kernel.assign(filters.reshape(layer.kernel.shape).astype(np.float32))
        layer.bias.assign(bias.astype(np.float32))
        # with train.whiten_bias_epochs the layer trains, and the optimizer keeps its kernel and then its
        # bias as they are (whitening_stop_steps)
        layer.trainable = bool(params.whiten_bias_epochs)

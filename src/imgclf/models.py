"""Keras 3 builders for the networks of the tutorials this project grew from.

Every model takes 8-bit RGB pixels (0-255) and holds its own preprocessing: the augmentation layers
(active only in training) and the rescaling to 0-1, so inference sees exactly what training saw.
Two classes get one sigmoid output, more get a softmax over the classes.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import layers

from imgclf.augment import RandomAffine
from imgclf.params import AugmentParams

# Each architecture's own dropout rate, used when train.dropout_rate is null.
DEFAULT_DROPOUT_RATES = {
    "simple_cnn": 0.2,  # the TensorFlow "Image classification" tutorial (cats vs dogs / flowers)
    "small_convnet": 0.5,  # Chollet, "Deep Learning with Python", small-data cats vs dogs
    "cifar_cnn": 0.25,
}


# The name of the Sequential of random layers at the model's input; exports leave it out.
AUGMENTATION_LAYER = "augmentation"

def _conv(filters: int) -> layers.Layer:
    return layers.Conv2D(filters, 3, padding="same", activation="relu")


def simple_cnn(features: keras.KerasTensor, dropout_rate: float) -> keras.KerasTensor:
    """Two conv/pool blocks (32, 64 filters), dense 128, dropout."""
    for filters in (32, 64):
        features = layers.MaxPooling2D()(_conv(filters)(features))
    features = layers.Flatten()(features)
    features = layers.Dense(128, activation="relu")(features)
    return layers.Dropout(dropout_rate)(features)


def small_convnet(features: keras.KerasTensor, dropout_rate: float) -> keras.KerasTensor:
    """Four conv/pool blocks (32, 64, 128, 128 filters), dropout, dense 512."""
    for filters in (32, 64, 128, 128):
        features = layers.MaxPooling2D()(_conv(filters)(features))
    features = layers.Flatten()(features)
    features = layers.Dropout(dropout_rate)(features)
    return layers.Dense(512, activation="relu")(features)


def cifar_cnn(features: keras.KerasTensor, dropout_rate: float) -> keras.KerasTensor:
    """Fifteen 3x3 convolutions in four blocks (3x32, 3x48, 5x96, 4x128), global max pooling, dense 500.

    1,071,542 parameters for 32x32x3 inputs and 10 classes.
    """
    blocks = ((32, 3), (48, 3), (96, 5), (128, 4))
    for index, (filters, depth) in enumerate(blocks):
        for _ in range(depth):
            features = _conv(filters)(features)
        if index < len(blocks) - 1:
            features = layers.MaxPooling2D()(features)
            features = layers.Dropout(dropout_rate)(features)
    features = layers.GlobalMaxPooling2D()(features)
    features = layers.Dropout(dropout_rate)(features)
    features = layers.Dense(500, activation="relu")(features)
    return layers.Dropout(dropout_rate)(features)


ARCHITECTURES: dict[str, Callable[[keras.KerasTensor, float], keras.KerasTensor]] = {
    "simple_cnn": simple_cnn,
    "small_convnet": small_convnet,
    "cifar_cnn": cifar_cnn,
}
# How many times each architecture halves the image: inputs must survive that many poolings.
POOLINGS = {"simple_cnn": 2, "small_convnet": 4, "cifar_cnn": 3}


def augmentation(augment: AugmentParams, seed: int | None) -> list[layers.Layer]:
    """The random layers for ``train.augment``: the geometry in one :class:`RandomAffine`, then contrast."""
    pipeline: list[layers.Layer] = []
    geometric = (augment.horizontal_flip or augment.vertical_flip or augment.rotation > 0 or augment.zoom > 0
                 or augment.translation > 0)
    if geometric:
        pipeline.append(RandomAffine(horizontal_flip=augment.horizontal_flip, vertical_flip=augment.vertical_flip,
                                     rotation=augment.rotation, zoom=augment.zoom, translation=augment.translation,
                                     seed=seed, name="random_affine"))
    if augment.contrast > 0:
        pipeline.append(layers.RandomContrast(augment.contrast, seed=None if seed is None else seed + 1))
    return pipeline


def build_model(name: str, input_shape: tuple[int, int, int], num_classes: int,
                dropout_rate: float | None = None, augment: AugmentParams | None = None,
                seed: int | None = None) -> keras.Model:
    """Build ``name`` for images of ``input_shape`` (height, width, channels), uncompiled."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(ARCHITECTURES)}")
    if num_classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got {num_classes}")
    smallest = 2 ** POOLINGS[name]
    if min(input_shape[:2]) < smallest:
        raise ValueError(f"{name} halves the image {POOLINGS[name]} times: it needs images of at least "
                         f"{smallest}x{smallest}, got {input_shape[0]}x{input_shape[1]}; raise resize.size.")
    rate = DEFAULT_DROPOUT_RATES[name] if dropout_rate is None else dropout_rate

    inputs = keras.Input(shape=input_shape, name="pixels")
    features = inputs
    random_layers = augmentation(augment or AugmentParams(), seed)
    if random_layers:
        features = keras.Sequential(random_layers, name=AUGMENTATION_LAYER)(features)
    features = layers.Rescaling(1.0 / 255, name="rescaling")(features)
    features = ARCHITECTURES[name](features, rate)
    if num_classes == 2:
        outputs = layers.Dense(1, activation="sigmoid", name="classifier")(features)
    else:
        outputs = layers.Dense(num_classes, activation="softmax", name="classifier")(features)
    return keras.Model(inputs, outputs, name=name)

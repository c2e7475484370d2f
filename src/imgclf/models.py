"""Keras 3 builders for the networks of the tutorials this project grew from.

Every model takes 8-bit RGB pixels (0-255) and holds its own preprocessing: the augmentation layers
(active only in training), the input scaling (1/255, or a pretrained backbone's own) and, when
asked for, the training split's per-channel normalisation, so inference sees exactly what training
saw. Two classes get one sigmoid output, more get a softmax over the classes; the output is
float32 even under mixed precision.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import keras
import numpy as np
from keras import layers

from imgclf.augment import RandomAffine, RandomBrightnessRange
from imgclf.backbones import BACKBONES, ImagenetPreprocessing, build_backbone
from imgclf.dataset import Split
from imgclf.params import AugmentParams, TrainParams

# Each architecture's own dropout rate, used when train.dropout_rate is null.
DEFAULT_DROPOUT_RATES = {
    "simple_cnn": 0.2,  # the TensorFlow "Image classification" tutorial (cats vs dogs / flowers)
    "small_convnet": 0.5,  # Chollet, "Deep Learning with Python", small-data cats vs dogs
    "cifar_cnn": 0.25,
    "vgg16": 0.5,  # the VGG-16 tutorial's head
    "resnet20": 0.0,  # He et al. use none
    "resnet56": 0.0,
    "fast_cnn": 0.0,
    "transfer": 0.3,
}

# The name of the Sequential of random layers at the model's input; exports leave it out.
AUGMENTATION_LAYER = "augmentation"
STATISTICS_BLOCK = 1024  # training images read at a time for the featurewise statistics
# The name of a transfer model's pretrained part; fine-tuning unfreezes its top layers.
BACKBONE_LAYER = "backbone"


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


def vgg16(features: keras.KerasTensor, dropout_rate: float) -> keras.KerasTensor:
    """VGG-16's thirteen convolutions from scratch, then the tutorial's head: dense 4096, dense 1024."""
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=features.shape[1:])
    features = layers.Flatten()(base(features))
    for units in (4096, 1024):
        features = layers.Dense(units, activation="relu")(features)
        features = layers.Dropout(dropout_rate)(features)
    return features


def _resnet_cifar(features: keras.KerasTensor, depth: int, dropout_rate: float) -> keras.KerasTensor:
    """He et al.'s CIFAR ResNet v1 (sec. 4.2): 6n+2 layers in three stages of 16, 32, 64 filters.

    Each stage holds n residual blocks of two 3x3 convolutions with batch normalisation; the first
    block of stages 2 and 3 halves the image, its shortcut a strided 1x1 convolution.
    """
    blocks = (depth - 2) // 6

    def conv_bn(x: keras.KerasTensor, filters: int, kernel: int = 3, strides: int = 1) -> keras.KerasTensor:
        x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                          kernel_initializer="he_normal")(x)
        return layers.BatchNormalization()(x)

    x = layers.ReLU()(conv_bn(features, 16))
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(blocks):
            strides = 2 if stage > 0 and block == 0 else 1
            residual = conv_bn(layers.ReLU()(conv_bn(x, filters, strides=strides)), filters)
            shortcut = conv_bn(x, filters, kernel=1, strides=strides) if strides != 1 else x
            x = layers.ReLU()(layers.Add()([shortcut, residual]))
    x = layers.GlobalAveragePooling2D()(x)
    return layers.Dropout(dropout_rate)(x) if dropout_rate else x


def resnet20(features: keras.KerasTensor, dropout_rate: float) -> keras.KerasTensor:
    """ResNet-20 for small images (0.27M parameters; 91.3% on CIFAR-10 in He et al.)."""
    return _resnet_cifar(features, 20, dropout_rate)


def resnet56(features: keras.KerasTensor, dropout_rate: float) -> keras.KerasTensor:
    """ResNet-56 for small images (0.85M parameters; 93.0% on CIFAR-10 in He et al.)."""
    return _resnet_cifar(features, 56, dropout_rate)


def fast_cnn(features: keras.KerasTensor, dropout_rate: float) -> keras.KerasTensor:
    """A small, fast CIFAR network after the CIFAR-10 training speedruns (Page's ResNet-9, Jordan's airbench).

    A 2x2 convolution to 24 channels, then three blocks of conv, max pooling, batch norm, GELU, conv,
    batch norm, GELU with 32, 128 and 128 filters, global max pooling: 0.5M parameters and about a
    quarter of cifar_cnn's computation, so that a few CPU cores train it on CIFAR-10 in minutes.
    """
    features = layers.Conv2D(24, 2, padding="valid", activation="gelu")(features)
    for filters in (32, 128, 128):
        features = layers.Conv2D(filters, 3, padding="same", use_bias=False)(features)
        features = layers.MaxPooling2D()(features)
        features = layers.Activation("gelu")(layers.BatchNormalization(momentum=0.9)(features))
        features = layers.Conv2D(filters, 3, padding="same", use_bias=False)(features)
        features = layers.Activation("gelu")(layers.BatchNormalization(momentum=0.9)(features))
    features = layers.GlobalMaxPooling2D()(features)
    return layers.Dropout(dropout_rate)(features) if dropout_rate else features


def transfer_head(features: keras.KerasTensor, dropout_rate: float) -> keras.KerasTensor:
    """A new head on a pretrained backbone: global average pooling, batch norm, dense 256 and 128."""
    features = layers.GlobalAveragePooling2D()(features)
    features = layers.BatchNormalization()(features)
    for units in (256, 128):
        features = layers.Dense(units, activation="relu")(features)
        features = layers.Dropout(dropout_rate)(features)
    return features


ARCHITECTURES: dict[str, Callable[[keras.KerasTensor, float], keras.KerasTensor]] = {
    "simple_cnn": simple_cnn,
    "small_convnet": small_convnet,
    "cifar_cnn": cifar_cnn,
    "vgg16": vgg16,
    "resnet20": resnet20,
    "resnet56": resnet56,
    "fast_cnn": fast_cnn,
    "transfer": transfer_head,  # on top of the backbone
}
# How many times each network from scratch halves the image: inputs must survive that many poolings.
POOLINGS = {"simple_cnn": 2, "small_convnet": 4, "cifar_cnn": 3, "vgg16": 5, "resnet20": 2, "resnet56": 2,
            "fast_cnn": 4}  # fast_cnn: a 2x2 valid convolution and 3 poolings need 16 pixels


def augmentation(augment: AugmentParams, seed: int | None) -> list[layers.Layer]:
    """The random layers for ``train.augment``: the geometry in one :class:`RandomAffine`, then colour."""
    pipeline: list[layers.Layer] = []
    if augment.geometric:
        pipeline.append(RandomAffine(horizontal_flip=augment.horizontal_flip, vertical_flip=augment.vertical_flip,
                                     rotation=augment.rotation, shear=augment.shear, zoom=augment.zoom,
                                     width_shift=augment.width_shift, height_shift=augment.height_shift,
                                     fill_mode=augment.fill_mode, fill_value=augment.cval, seed=seed,
                                     name="random_affine"))
    if augment.brightness is not None and augment.brightness != (1.0, 1.0):
        low, high = augment.brightness
        pipeline.append(RandomBrightnessRange(low, high, seed=None if seed is None else seed + 2,
                                              name="random_brightness_range"))
    if augment.contrast > 0:
        pipeline.append(layers.RandomContrast(augment.contrast, seed=None if seed is None else seed + 1))
    return pipeline


@dataclass(frozen=True)
class ChannelStatistics:
    """Per-channel mean and variance of the training images after scaling, for featurewise normalisation."""

    mean: tuple[float, ...]
    variance: tuple[float, ...]

    @classmethod
    def of(cls, blocks: Iterable[np.ndarray], scale: float, center: bool, standardize: bool) -> ChannelStatistics:
        """Over the uint8 NHWC ``blocks`` of a split (:meth:`Split.blocks`): ``center`` subtracts the mean,
        ``standardize`` divides by the standard deviation (as ImageDataGenerator's featurewise_center
        and featurewise_std_normalization)."""
        # block by block, in float64: exact, and never a float copy of the whole split
        total = total_squares = np.zeros(())  # 0-d: per-channel once the first block is added
        count = 0
        for block in blocks:
            pixels = block.reshape(-1, block.shape[-1]).astype(np.float64) * scale
            total = total + pixels.sum(axis=0)
            total_squares = total_squares + (pixels ** 2).sum(axis=0)
            count += len(pixels)
        if not count:
            raise ValueError("featurewise statistics need at least one image")
        channels = len(total)
        mean = total / count
        variance = np.maximum(total_squares / count - mean ** 2, 1e-12)
        return cls(mean=tuple(mean) if center else (0.0,) * channels,
                   variance=tuple(variance) if standardize else (1.0,) * channels)


def build_model(name: str, input_shape: tuple[int, int, int], num_classes: int, *,
                dropout_rate: float | None = None, augment: AugmentParams | None = None,
                seed: int | None = None, backbone: str = "mobilenet_v2", weights: str | None = None,
                freeze_base: bool = True, rescale: float | None = None,
                normalization: ChannelStatistics | None = None) -> keras.Model:
    """Build ``name`` for images of ``input_shape`` (height, width, channels), uncompiled.

    ``transfer`` puts a new head on ``backbone`` with ``weights`` (imagenet, a file, or None),
    frozen when ``freeze_base``. ``rescale`` replaces the network's own input scaling;
    ``normalization`` adds the training split's per-channel normalisation after it.
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(ARCHITECTURES)}")
    if num_classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got {num_classes}")
    if name in POOLINGS:
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
    if rescale is not None:
        features = layers.Rescaling(rescale, name="rescaling")(features)
    elif name == "transfer":
        features = ImagenetPreprocessing(BACKBONES[backbone].preprocessing, name="imagenet_preprocessing")(features)
    else:
        features = layers.Rescaling(1.0 / 255, name="rescaling")(features)
    if normalization is not None:
        features = layers.Normalization(mean=normalization.mean, variance=normalization.variance,
                                        name="featurewise_normalization")(features)
    if name == "transfer":
        base = build_backbone(backbone, input_shape, weights)
        base.name = BACKBONE_LAYER
        base.trainable = not freeze_base
        # a frozen backbone runs in inference mode (batch norm keeps its ImageNet statistics), also
        # once fine-tuning unfreezes it
        features = base(features, training=False) if freeze_base else base(features)
    features = ARCHITECTURES[name](features, rate)
    if num_classes == 2:
        outputs = layers.Dense(1, activation="sigmoid", dtype="float32", name="classifier")(features)
    else:
        outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="classifier")(features)
    model_name = f"transfer_{backbone}" if name == "transfer" else name
    return keras.Model(inputs, outputs, name=model_name)


def build_from_params(params: TrainParams, train_split: Split, num_classes: int) -> keras.Model:
    """The model ``train`` describes, for the images of ``train_split`` (read for featurewise statistics)."""
    normalization = None
    if params.featurewise_center or params.featurewise_std_normalization:
        scale = params.rescale if params.rescale is not None else 1.0 / 255
        normalization = ChannelStatistics.of(train_split.blocks(STATISTICS_BLOCK), scale, params.featurewise_center,
                                             params.featurewise_std_normalization)
    return build_model(params.model, train_split.image_shape, num_classes, dropout_rate=params.dropout_rate,
                       augment=params.augment, seed=params.seed, backbone=params.backbone,
                       weights=params.pretrained_weights, freeze_base=params.freeze_base, rescale=params.rescale,
                       normalization=normalization)


def unfreeze_backbone(model: keras.Model, top_layers: int | None) -> int:
    """Make the top ``top_layers`` layers of a transfer model's backbone trainable (None: all).

    Batch normalisation layers stay frozen, as Keras' fine-tuning guide advises. Returns how many
    layers now train. The model must be compiled again for this to take effect.
    """
    base = model.get_layer(BACKBONE_LAYER)
    base.trainable = True
    candidates = base.layers if top_layers is None else base.layers[-top_layers:]
    for layer in base.layers:
        layer.trainable = layer in candidates and not isinstance(layer, layers.BatchNormalization)
    return sum(1 for layer in base.layers if layer.trainable and layer.weights)

"""The networks ``train.model`` names, one record each: how it is built, its dropout, what it needs.

Adding a network is a builder here and a line in :data:`NETWORKS`: ``train.model`` then allows its
name (:mod:`imgclf.modeling.params` takes the allowed values from here), :func:`imgclf.modeling.models.build_model`
puts the model's input, preprocessing and classifier around it, and the model tests build and train it.
The same holds for a pretrained backbone of ``train.model: transfer`` and :data:`BACKBONES`.

Keras is imported inside the builders, not at the top: the train stage checks its params against
these names before Keras (and TensorFlow with it) is loaded, so that a bad param fails in a second.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras

# The layers between the scaled input and the classifier: (features, dropout rate) -> features.
Builder = Callable[["keras.KerasTensor", float], "keras.KerasTensor"]

# The name of a network's first, patch-sized convolution that train.whiten sets to the whitening
# transform of the training patches (imgclf.modeling.initialisation).
WHITENING_LAYER = "whiten"


@dataclass(frozen=True)
class Network:
    """One network of ``train.model``."""

    build: Builder
    dropout_rate: float  # its own rate, used when train.dropout_rate is null
    # The smallest height and width it builds at, found by building it (tests/test_models.py builds
    # each network at it and fails one pixel under it). 1 for transfer, whose backbone decides
    # (Backbone.min_size), and for the ResNets, whose strided "same" convolutions never shrink an
    # image to nothing.
    min_size: int
    whitening: bool = False  # its first convolution is WHITENING_LAYER, which train.whiten initialises
    # each convolution without a bias is followed by a batch normalisation: train.optimizer muon moves them
    batch_norm_convolutions: bool = False


@dataclass(frozen=True)
class Backbone:
    """One pretrained ``keras.applications`` network of ``train.backbone`` (``train.model: transfer``)."""

    application: str  # the class in keras.applications, e.g. "VGG16"
    preprocessing: str  # an ImagenetPreprocessing mode (imgclf.modeling.backbones)
    min_size: int  # the smallest height and width keras.applications accepts
    weights_file: str  # the ImageNet weights without the classifier, in Keras' cache folder


def _conv(filters: int) -> keras.layers.Layer:
    from keras import layers

    return layers.Conv2D(filters, 3, padding="same", activation="relu")


def simple_cnn(features: keras.KerasTensor, dropout_rate: float) -> keras.KerasTensor:
    """Two conv/pool blocks (32, 64 filters), dense 128, dropout."""
    from keras import layers

    for filters in (32, 64):
        features = layers.MaxPooling2D()(_conv(filters)(features))
    features = layers.Flatten()(features)
    features = layers.Dense(128, activation="relu")(features)
    return layers.Dropout(dropout_rate)(features)


def small_convnet(features: keras.KerasTensor, dropout_rate: float) -> keras.KerasTensor:
    """Four conv/pool blocks (32, 64, 128, 128 filters), dropout, dense 512."""
    from keras import layers

    for filters in (32, 64, 128, 128):
        features = layers.MaxPooling2D()(_conv(filters)(features))
    features = layers.Flatten()(features)
    features = layers.Dropout(dropout_rate)(features)
    return layers.Dense(512, activation="relu")(features)


def cifar_cnn(features: keras.KerasTensor, dropout_rate: float) -> keras.KerasTensor:
    """Fifteen 3x3 convolutions in four blocks (3x32, 3x48, 5x96, 4x128), global max pooling, dense 500.

    1,071,542 parameters for 32x32x3 inputs and 10 classes.
    """
    from keras import layers

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
    import keras
    from keras import layers

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
    from keras import layers

    from imgclf.modeling.batch_norm import BatchNormalization

    blocks = (depth - 2) // 6

    def conv_bn(x: keras.KerasTensor, filters: int, kernel: int = 3, strides: int = 1) -> keras.KerasTensor:
        x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                          kernel_initializer="he_normal")(x)
        return BatchNormalization()(x)

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

    A 2x2 convolution to 24 channels, then three blocks of conv, max pooling, batch norm, ReLU, conv,
    batch norm, ReLU with 32, 128 and 128 filters, global max pooling: 0.5M parameters and about a
    quarter of cifar_cnn's computation, so that a few CPU cores train it on CIFAR-10 in minutes.

    Its activations are ReLUs, where airbench has GELUs: in bfloat16 on a 2-core AMX Xeon a training
    step is 1.25x as fast (the stem's GELU alone, on its full-resolution maps, took an eighth of it).
    At equal epochs that costs some accuracy (CIFAR-10 at 10 epochs 85.16% against 85.77%); on the
    flower photos it gains in equal time, and the photos recipe spends the time on more epochs
    (benchmarks/README.md, "ReLUs in fast_cnn").
    """
    from keras import layers

    from imgclf.modeling.batch_norm import BatchNormalization

    features = layers.ReLU()(layers.Conv2D(24, 2, padding="valid")(features))
    for filters in (32, 128, 128):
        features = layers.Conv2D(filters, 3, padding="same", use_bias=False)(features)
        features = layers.MaxPooling2D()(features)
        features = layers.ReLU()(BatchNormalization(momentum=0.9)(features))
        features = layers.Conv2D(filters, 3, padding="same", use_bias=False)(features)
        features = layers.ReLU()(BatchNormalization(momentum=0.9)(features))
    features = layers.GlobalMaxPooling2D()(features)
    return layers.Dropout(dropout_rate)(features) if dropout_rate else features


def _airbench(features: keras.KerasTensor, dropout_rate: float, widths: tuple[int, int, int]) -> keras.KerasTensor:
    """airbench's network with its three blocks ``widths`` filters wide (:func:`airbench`)."""
    from keras import layers

    from imgclf.modeling.batch_norm import BatchNormalization
    from imgclf.modeling.gelu import GELU

    def norm() -> layers.Layer:
        return BatchNormalization(momentum=0.6, epsilon=1e-12, scale=False)

    features = layers.Conv2D(24, 2, padding="valid", name=WHITENING_LAYER)(features)
    features = GELU()(features)
    for filters in widths:
        features = layers.Conv2D(filters, 3, padding="same", use_bias=False)(features)
        features = layers.MaxPooling2D()(features)
        features = GELU()(norm()(features))
        features = layers.Conv2D(filters, 3, padding="same", use_bias=False)(features)
        features = GELU()(norm()(features))
    features = layers.MaxPooling2D(3)(features)
    features = layers.Rescaling(1 / 9, name="features_over_9")(layers.Flatten()(features))
    return layers.Dropout(dropout_rate)(features) if dropout_rate else features


def airbench(features: keras.KerasTensor, dropout_rate: float) -> keras.KerasTensor:
    """airbench94's network (Jordan, 2024, "94% on CIFAR-10 in 3.29 seconds on a single GPU").

    A 2x2 convolution to 24 channels (:data:`WHITENING_LAYER`, twice the 12 values of a 2x2 RGB
    patch: ``train.whiten`` makes it a whitening transform), GELU; three blocks of conv, max pooling,
    batch norm, GELU, conv, batch norm, GELU with 64, 256 and 256 filters, their batch norm without
    a scale (only the shift trains), momentum 0.6 and epsilon 1e-12 as airbench's; max pooling over
    3x3, the features scaled by 1/9 before the classifier. 1.97M parameters; at 32x32, 0.24 GFLOPs
    per image forward, about 0.71 with the backward pass (airbench94: 0.36 PFLOPs for 9.9 epochs of
    50,000 images). ``train.identity_init`` starts its 3x3 convolutions as the identity, as airbench does.
    """
    return _airbench(features, dropout_rate, (64, 256, 256))


def airbench95(features: keras.KerasTensor, dropout_rate: float) -> keras.KerasTensor:
    """airbench95's network: :func:`airbench` with blocks of 128, 384 and 384 filters.

    4.6M parameters; at 32x32, 0.60 GFLOPs per image forward, 2.55 times airbench94's (airbench95:
    1.39 PFLOPs for 15 epochs of 50,000 images, 95.01% on CIFAR-10).
    """
    return _airbench(features, dropout_rate, (128, 384, 384))


def transfer_head(features: keras.KerasTensor, dropout_rate: float) -> keras.KerasTensor:
    """A new head on a pretrained backbone: global average pooling, batch norm, dense 256 and 128."""
    from keras import layers

    features = layers.GlobalAveragePooling2D()(features)
    features = layers.BatchNormalization()(features)
    for units in (256, 128):
        features = layers.Dense(units, activation="relu")(features)
        features = layers.Dropout(dropout_rate)(features)
    return features


NETWORKS: dict[str, Network] = {
    # the TensorFlow "Image classification" tutorial (cats vs dogs / flowers)
    "simple_cnn": Network(simple_cnn, dropout_rate=0.2, min_size=4),
    # Chollet, "Deep Learning with Python", small-data cats vs dogs
    "small_convnet": Network(small_convnet, dropout_rate=0.5, min_size=16),
    "cifar_cnn": Network(cifar_cnn, dropout_rate=0.25, min_size=8),
    "vgg16": Network(vgg16, dropout_rate=0.5, min_size=32),  # the VGG-16 tutorial's head
    # He et al. use no dropout
    "resnet20": Network(resnet20, dropout_rate=0.0, min_size=1, batch_norm_convolutions=True),
    "resnet56": Network(resnet56, dropout_rate=0.0, min_size=1, batch_norm_convolutions=True),
    "fast_cnn": Network(fast_cnn, dropout_rate=0.0, min_size=9, batch_norm_convolutions=True),
    # Jordan's airbench94 and airbench95
    "airbench": Network(airbench, dropout_rate=0.0, min_size=25, whitening=True, batch_norm_convolutions=True),
    "airbench95": Network(airbench95, dropout_rate=0.0, min_size=25, whitening=True, batch_norm_convolutions=True),
    "transfer": Network(transfer_head, dropout_rate=0.3, min_size=1),  # on top of train.backbone
}

BACKBONES: dict[str, Backbone] = {
    "vgg16": Backbone("VGG16", "caffe", 32, "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "vgg19": Backbone("VGG19", "caffe", 32, "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "resnet50": Backbone("ResNet50", "caffe", 32, "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "mobilenet_v2": Backbone("MobileNetV2", "tf", 32,
                             "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5"),
    "efficientnet_b0": Backbone("EfficientNetB0", "none", 32, "efficientnetb0_notop.h5"),
    "inception_v3": Backbone("InceptionV3", "tf", 75, "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"),
}

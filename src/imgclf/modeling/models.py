"""The whole Keras model around a network of :mod:`imgclf.modeling.networks`: input, preprocessing, classifier.

Every model takes 8-bit RGB pixels (0-255) and holds its own preprocessing: the augmentation layers
(active only in training), the input scaling (1/255, or a pretrained backbone's own) and, when
asked for, the training split's per-channel normalisation, so inference sees exactly what training
saw. Two classes get one sigmoid output, more get a softmax over the classes; the output is
float32 even under mixed precision.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import keras
import numpy as np
from keras import layers

from imgclf.data.dataset import Split
from imgclf.modeling.augment import AlternatingFlip, RandomAffine, RandomBrightnessRange, RandomTranslate
from imgclf.modeling.backbones import ImagenetPreprocessing, build_backbone
from imgclf.modeling.networks import BACKBONES, NETWORKS
from imgclf.modeling.params import AugmentParams, TrainParams

# The layers in front of the network, by name, in their order (those a model has):
INPUT_LAYER = "pixels"
AUGMENTATION_LAYER = "augmentation"  # the Sequential of random layers; exports leave it out
RESCALING_LAYER = "rescaling"
IMAGENET_PREPROCESSING_LAYER = "imagenet_preprocessing"
NORMALIZATION_LAYER = "featurewise_normalization"
INPUT_LAYERS = (INPUT_LAYER, AUGMENTATION_LAYER, RESCALING_LAYER, IMAGENET_PREPROCESSING_LAYER, NORMALIZATION_LAYER)
# The name of a transfer model's pretrained part; fine-tuning unfreezes its top layers.
BACKBONE_LAYER = "backbone"
STATISTICS_BLOCK = 1024  # training images read at a time for the featurewise statistics


def augmentation(augment: AugmentParams, seed: int | None) -> list[layers.Layer]:
    """The random layers for ``train.augment``: the alternating flip (first: it reads whole pixel
    values), the geometry in one :class:`RandomAffine`, whole-pixel translation, then colour."""
    pipeline: list[layers.Layer] = []
    if augment.horizontal_flip == "alternate":
        pipeline.append(AlternatingFlip(name="alternating_flip"))
    if augment.geometric:
        pipeline.append(RandomAffine(horizontal_flip=augment.horizontal_flip is True,
                                     vertical_flip=augment.vertical_flip,
                                     rotation=augment.rotation, shear=augment.shear, zoom=augment.zoom,
                                     width_shift=augment.width_shift, height_shift=augment.height_shift,
                                     fill_mode=augment.fill_mode, fill_value=augment.cval, seed=seed,
                                     name="random_affine"))
    if augment.translate:
        pipeline.append(RandomTranslate(augment.translate, seed=None if seed is None else seed + 3,
                                        name="random_translate"))
    if augment.brightness is not None and augment.brightness != (1.0, 1.0):
        low, high = augment.brightness
        pipeline.append(RandomBrightnessRange(low, high, seed=None if seed is None else seed + 2,
                                              name="random_brightness_range"))
    if augment.contrast > 0:
        pipeline.append(layers.RandomContrast(augment.contrast, seed=None if seed is None else seed + 1))
    return pipeline


def augmented_examples(split: Split, augment: AugmentParams, seed: int, count: int = 8, variants: int = 5
                       ) -> tuple[np.ndarray, list[np.ndarray]] | None:
    """``count`` images of ``split``, evenly spread, and ``variants`` random augmentations of each by
    ``train.augment``'s layers (a copy of them: a model's own random state is untouched); None when
    ``augment`` turns nothing on."""
    random_layers = augmentation(augment, seed)
    if not random_layers:
        return None
    examples = split.read(np.linspace(0, len(split) - 1, count).astype(int))
    layer = keras.Sequential(random_layers)
    return examples, [np.clip(keras.ops.convert_to_numpy(layer(examples.astype("float32"), training=True)), 0, 255)
                      .round().astype(np.uint8) for _ in range(variants)]


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
    if name not in NETWORKS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(NETWORKS)}")
    if num_classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got {num_classes}")
    network = NETWORKS[name]
    if min(input_shape[:2]) < network.min_size:
        raise ValueError(f"{name} needs images of at least {network.min_size}x{network.min_size} (its convolutions "
                         f"and poolings shrink a smaller one to nothing), got {input_shape[0]}x{input_shape[1]}; "
                         "raise resize.size.")
    rate = network.dropout_rate if dropout_rate is None else dropout_rate

    inputs = keras.Input(shape=input_shape, name=INPUT_LAYER)
    features = inputs
    random_layers = augmentation(augment or AugmentParams(), seed)
    if random_layers:
        features = keras.Sequential(random_layers, name=AUGMENTATION_LAYER)(features)
    if rescale is not None:
        features = layers.Rescaling(rescale, name=RESCALING_LAYER)(features)
    elif name == "transfer":
        features = ImagenetPreprocessing(BACKBONES[backbone].preprocessing, name=IMAGENET_PREPROCESSING_LAYER)(features)
    else:
        features = layers.Rescaling(1.0 / 255, name=RESCALING_LAYER)(features)
    if normalization is not None:
        features = layers.Normalization(mean=normalization.mean, variance=normalization.variance,
                                        name=NORMALIZATION_LAYER)(features)
    if name == "transfer":
        base = build_backbone(backbone, input_shape, weights)
        base.name = BACKBONE_LAYER
        base.trainable = not freeze_base
        # a frozen backbone runs in inference mode (batch norm keeps its ImageNet statistics), also
        # once fine-tuning unfreezes it
        features = base(features, training=False) if freeze_base else base(features)
    features = network.build(features, rate)
    if num_classes == 2:
        outputs = layers.Dense(1, activation="sigmoid", dtype="float32", name="classifier")(features)
    else:
        outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="classifier")(features)
    model_name = f"transfer_{backbone}" if name == "transfer" else name
    return keras.Model(inputs, outputs, name=model_name)


def build_from_params(params: TrainParams, train_split: Split, num_classes: int) -> keras.Model:
    """The model ``train`` describes, for the images of ``train_split`` (read for featurewise statistics
    and the whitening of ``train.whiten``)."""
    normalization = None
    if params.featurewise_center or params.featurewise_std_normalization:
        scale = params.rescale if params.rescale is not None else 1.0 / 255
        normalization = ChannelStatistics.of(train_split.blocks(STATISTICS_BLOCK), scale, params.featurewise_center,
                                             params.featurewise_std_normalization)
    model = build_model(params.model, train_split.image_shape, num_classes, dropout_rate=params.dropout_rate,
                        augment=params.augment, seed=params.seed, backbone=params.backbone,
                        weights=params.pretrained_weights, freeze_base=params.freeze_base, rescale=params.rescale,
                        normalization=normalization)
    if params.whiten or params.identity_init:
        from imgclf.modeling.initialisation import initialise

        initialise(model, params, train_split)
    return model


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

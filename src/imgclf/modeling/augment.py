"""Augmentation layers: the settings of Keras' old ``ImageDataGenerator``, as Keras 3 layers.

Keras' ``RandomFlip``, ``RandomRotation``, ``RandomZoom`` and ``RandomTranslation`` each resample
every image, one after the other, and none of them shears. :class:`RandomAffine` draws flips,
rotation, shear, zoom and shifts per image, composes them into one affine matrix and resamples
once: ImageDataGenerator's geometry, about as fast as a single rotation (benchmarks/README.md),
and with one interpolation instead of three. :class:`RandomBrightnessRange` is its
``brightness_range``. From the CIFAR-10 speedruns (airbench): :class:`AlternatingFlip` mirrors each
image in every other epoch, :class:`RandomTranslate` shifts by whole pixels with reflected edges.
All are registered, so saved models load in safe mode.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from imgclf.modeling.params import FILL_MODES


@keras.saving.register_keras_serializable(package="imgclf")
class RandomAffine(keras.layers.Layer):
    """Random flips, rotation, shear, zoom and shifts of a batch of (height, width, channels) images.

    Ranges follow ``ImageDataGenerator``: ``rotation`` and ``shear`` in degrees (drawn from
    ``[-r, r]``), ``zoom`` scales width and height independently by factors from
    ``[1 - zoom, 1 + zoom]`` (above 1 shows more of the image), ``width_shift`` and
    ``height_shift`` are fractions of the size; each flip happens with probability 1/2. Pixels from
    outside the image are filled by ``fill_mode`` (``constant`` uses ``fill_value``). Active in
    training only.
    """

    def __init__(self, horizontal_flip: bool = False, vertical_flip: bool = False, rotation: float = 0.0,
                 shear: float = 0.0, zoom: float = 0.0, width_shift: float = 0.0, height_shift: float = 0.0,
                 fill_mode: str = "nearest", fill_value: float = 0.0, seed: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if fill_mode not in FILL_MODES:
            raise ValueError(f"unknown fill_mode {fill_mode!r}; choose one of {', '.join(FILL_MODES)}")
        self.horizontal_flip = horizontal_flip
        self.vertical_flip = vertical_flip
        self.rotation = rotation
        self.shear = shear
        self.zoom = zoom
        self.width_shift = width_shift
        self.height_shift = height_shift
        self.fill_mode = fill_mode
        self.fill_value = fill_value
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training: bool = False):
        if not training:
            return images
        transforms = self.random_transforms(ops.shape(images))
        if images.dtype != "float32":  # under mixed precision: resample in float32, hand back the input's type
            return ops.cast(ops.image.affine_transform(
                ops.cast(images, "float32"), transforms, interpolation="bilinear", fill_mode=self.fill_mode,
                fill_value=self.fill_value, data_format="channels_last"), images.dtype)
        return ops.image.affine_transform(images, transforms, interpolation="bilinear", fill_mode=self.fill_mode,
                                          fill_value=self.fill_value, data_format="channels_last")

    def random_transforms(self, shape) -> Any:
        """(batch, 8) transforms mapping each output pixel to the input point it is read from."""
        batch, height, width = shape[0], shape[1], shape[2]

        def uniform(low: float, high: float):
            return keras.random.uniform((batch,), low, high, seed=self.seed_generator)

        def flip_sign(enabled: bool):
            if not enabled:
                return ops.ones((batch,))
            return ops.where(uniform(0.0, 1.0) < 0.5, -1.0, 1.0)

        angle = uniform(-self.rotation, self.rotation) * (math.pi / 180)
        shear = uniform(-self.shear, self.shear) * (math.pi / 180)
        zoom_x, zoom_y = uniform(1.0 - self.zoom, 1.0 + self.zoom), uniform(1.0 - self.zoom, 1.0 + self.zoom)
        flip_x, flip_y = flip_sign(self.horizontal_flip), flip_sign(self.vertical_flip)
        width_f, height_f = ops.cast(width, "float32"), ops.cast(height, "float32")
        shift_x = uniform(-self.width_shift, self.width_shift) * width_f
        shift_y = uniform(-self.height_shift, self.height_shift) * height_f
        # input = centre + rotation · shear · zoom · flip · (output - centre) + shift
        cos, sin = ops.cos(angle), ops.sin(angle)
        # shear as ImageDataGenerator applies it: [[1, -sin s], [0, cos s]]
        a00, a01 = cos, cos * -ops.sin(shear) - sin * ops.cos(shear)
        a10, a11 = sin, sin * -ops.sin(shear) + cos * ops.cos(shear)
        m00, m01 = a00 * zoom_x * flip_x, a01 * zoom_y * flip_y
        m10, m11 = a10 * zoom_x * flip_x, a11 * zoom_y * flip_y
        centre_x, centre_y = (width_f - 1) / 2, (height_f - 1) / 2
        offset_x = centre_x - m00 * centre_x - m01 * centre_y + shift_x
        offset_y = centre_y - m10 * centre_x - m11 * centre_y + shift_y
        zeros = ops.zeros((batch,))
        return ops.stack([m00, m01, offset_x, m10, m11, offset_y, zeros, zeros], axis=1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "horizontal_flip": self.horizontal_flip,
                "vertical_flip": self.vertical_flip, "rotation": self.rotation, "shear": self.shear,
                "zoom": self.zoom, "width_shift": self.width_shift, "height_shift": self.height_shift,
                "fill_mode": self.fill_mode, "fill_value": self.fill_value, "seed": self.seed}


@keras.saving.register_keras_serializable(package="imgclf")
class RandomBrightnessRange(keras.layers.Layer):
    """Multiply each image by a factor drawn from ``[low, high]``, as ImageDataGenerator's
    ``brightness_range`` does; pixels stay within 0-255. Active in training only."""

    def __init__(self, low: float, high: float, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.low = low
        self.high = high
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training: bool = False):
        if not training:
            return images
        factors = keras.random.uniform((ops.shape(images)[0], 1, 1, 1), self.low, self.high,
                                       seed=self.seed_generator, dtype=images.dtype)
        return ops.clip(images * factors, 0.0, 255.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "low": self.low, "high": self.high, "seed": self.seed}


@keras.saving.register_keras_serializable(package="imgclf")
class AlternatingFlip(keras.layers.Layer):
    """Mirror each image left-right in every other epoch: the derandomised flip of airbench (Jordan,
    2024, "alternating flip"), where random flips leave some images unflipped several epochs running.

    Which half of the images starts flipped is decided by each image itself (the parity of the sum
    of its pixel values, exact in integers), so that no index has to travel with the pixels; from
    then on each image alternates. :func:`start_epoch` tells the layer the epoch, before each
    epoch's ``fit``. Active in training only; put it first, where pixels are still whole numbers.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.epoch = self.add_weight(shape=(), dtype="int32", initializer="zeros", trainable=False, name="epoch")

    def call(self, images, training: bool = False):
        if not training:
            return images
        parity = ops.sum(ops.cast(ops.round(images), "int32"), axis=(1, 2, 3)) % 2
        flip = ops.reshape(ops.equal((parity + self.epoch) % 2, 1), (-1, 1, 1, 1))
        return ops.where(flip, ops.flip(images, axis=2), images)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="imgclf")
class RandomTranslate(keras.layers.Layer):
    """Shift each image by whole pixels, from ``-pixels`` to ``pixels`` in each direction, the edges
    filled by reflection (airbench's translation: a random crop of the image padded by reflection,
    with no interpolation). Active in training only."""

    def __init__(self, pixels: int, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pixels = pixels
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training: bool = False):
        if not training or not self.pixels:
            return images
        r = self.pixels
        height, width = images.shape[1], images.shape[2]
        padded = ops.pad(images, [[0, 0], [r, r], [r, r], [0, 0]], mode="reflect")
        batch = ops.shape(images)[0]
        down = keras.random.randint((batch,), -r, r + 1, seed=self.seed_generator)
        right = keras.random.randint((batch,), -r, r + 1, seed=self.seed_generator)
        # one slice per shift, each image taking its own: 2r + 1 slices an axis, no gather
        rows = padded[:, r:r + height]
        for shift in range(-r, r + 1):
            chosen = ops.reshape(ops.equal(down, shift), (-1, 1, 1, 1))
            rows = ops.where(chosen, padded[:, r + shift:r + shift + height], rows)
        shifted = rows[:, :, r:r + width]
        for shift in range(-r, r + 1):
            chosen = ops.reshape(ops.equal(right, shift), (-1, 1, 1, 1))
            shifted = ops.where(chosen, rows[:, :, r + shift:r + shift + width], shifted)
        return shifted

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "pixels": self.pixels, "seed": self.seed}


def start_epoch(model: keras.Model, epoch: int) -> None:
    """Tell ``model``'s :class:`AlternatingFlip` layers (if any) that epoch ``epoch`` (0-based) begins."""
    for layer in model.layers:
        if isinstance(layer, AlternatingFlip):
            layer.epoch.assign(epoch)
        elif isinstance(layer, keras.Model):  # the augmentation Sequential
            start_epoch(layer, epoch)

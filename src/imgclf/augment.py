"""Geometric augmentation in one resampling per image.

Keras' ``RandomFlip``, ``RandomRotation``, ``RandomZoom`` and ``RandomTranslation`` each resample
every image, one after the other. :class:`RandomAffine` draws all of them per image, composes them
into one affine matrix and resamples once: the same random geometry, about as fast as a single
rotation (benchmarks/README.md), and with one interpolation instead of three.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

FILL_MODES = ("reflect", "wrap", "constant", "nearest")


@keras.saving.register_keras_serializable(package="imgclf")
class RandomAffine(keras.layers.Layer):
    """Random flips, rotation, zoom and shifts of a batch of (height, width, channels) images.

    Ranges follow Keras' own layers: ``rotation`` is a fraction of a full turn (0.1 is up to
    ±36°), ``zoom`` a fraction of the size (0.2 zooms between 80% and 120%), ``translation`` a
    fraction of the size per axis; each flip happens with probability 1/2. Pixels from outside the
    image are filled by ``fill_mode`` (``constant`` uses ``fill_value``). Active in training only.
    """

    def __init__(self, horizontal_flip: bool = False, vertical_flip: bool = False, rotation: float = 0.0,
                 zoom: float = 0.0, translation: float = 0.0, fill_mode: str = "reflect", fill_value: float = 0.0,
                 seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if fill_mode not in FILL_MODES:
            raise ValueError(f"unknown fill_mode {fill_mode!r}; choose one of {', '.join(FILL_MODES)}")
        self.horizontal_flip = horizontal_flip
        self.vertical_flip = vertical_flip
        self.rotation = rotation
        self.zoom = zoom
        self.translation = translation
        self.fill_mode = fill_mode
        self.fill_value = fill_value
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training: bool = False):
        if not training:
            return images
        return ops.image.affine_transform(images, self.random_transforms(ops.shape(images)),
                                          interpolation="bilinear", fill_mode=self.fill_mode,
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

        angle = uniform(-self.rotation, self.rotation) * (2 * math.pi)
        scale = uniform(1.0 - self.zoom, 1.0 + self.zoom)  # >1 reads a larger area: zooms out
        flip_x, flip_y = flip_sign(self.horizontal_flip), flip_sign(self.vertical_flip)
        width_f, height_f = ops.cast(width, "float32"), ops.cast(height, "float32")
        shift_x = uniform(-self.translation, self.translation) * width_f
        shift_y = uniform(-self.translation, self.translation) * height_f
        # input = centre + rotation · zoom · flip · (output - centre) + shift
        cos, sin = ops.cos(angle) * scale, ops.sin(angle) * scale
        m00, m01, m10, m11 = cos * flip_x, -sin * flip_y, sin * flip_x, cos * flip_y
        centre_x, centre_y = (width_f - 1) / 2, (height_f - 1) / 2
        offset_x = centre_x - m00 * centre_x - m01 * centre_y + shift_x
        offset_y = centre_y - m10 * centre_x - m11 * centre_y + shift_y
        zeros = ops.zeros((batch,))
        return ops.stack([m00, m01, offset_x, m10, m11, offset_y, zeros, zeros], axis=1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "horizontal_flip": self.horizontal_flip,
                "vertical_flip": self.vertical_flip, "rotation": self.rotation, "zoom": self.zoom,
                "translation": self.translation, "fill_mode": self.fill_mode, "fill_value": self.fill_value,
                "seed": self.seed}

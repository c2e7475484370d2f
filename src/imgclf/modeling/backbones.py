"""Building the pretrained ``keras.applications`` backbones of ``train.model: transfer``.

Which backbones there are, and what each needs: :data:`imgclf.modeling.networks.BACKBONES`.

Each backbone expects its own input preprocessing (how its ImageNet weights were trained). It is
done by a layer inside the model, :class:`ImagenetPreprocessing`, not by a function applied to the
data, so that ``imgclf predict`` and every export see exactly what training saw.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import keras
from keras import ops

from imgclf.modeling.networks import BACKBONES
from imgclf.plumbing.errors import PipelineError

logger = logging.getLogger(__name__)

# The ImageNet channel means and standard deviations of each preprocessing mode, in RGB order.
CAFFE_MEANS_BGR = (103.939, 116.779, 123.68)
TORCH_MEANS = (0.485, 0.456, 0.406)
TORCH_STDS = (0.229, 0.224, 0.225)
MODES = ("caffe", "tf", "torch", "none")


@keras.saving.register_keras_serializable(package="imgclf")
class ImagenetPreprocessing(keras.layers.Layer):
    """``keras.applications``' ``preprocess_input`` as a layer, for RGB pixels 0-255.

    ``caffe`` (VGG, ResNet): RGB to BGR, minus the ImageNet mean per channel; ``tf`` (MobileNet,
    Inception): scaled to [-1, 1]; ``torch``: scaled to [0, 1], standardised per channel;
    ``none``: unchanged (EfficientNet rescales inside itself).
    """

    def __init__(self, mode: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"unknown preprocessing mode {mode!r}; choose one of {', '.join(MODES)}")
        self.mode = mode

    def call(self, images):
        images = ops.cast(images, self.compute_dtype)
        if self.mode == "caffe":
            return ops.flip(images, axis=-1) - ops.convert_to_tensor(CAFFE_MEANS_BGR, self.compute_dtype)
        if self.mode == "tf":
            return images / 127.5 - 1.0
        if self.mode == "torch":
            means = ops.convert_to_tensor(TORCH_MEANS, self.compute_dtype)
            stds = ops.convert_to_tensor(TORCH_STDS, self.compute_dtype)
            return (images / 255.0 - means) / stds
        return images

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode}


MOBILENET_SIZES = (96, 128, 160, 192, 224)  # square sizes with their own MobileNetV2 weights; others get 224's


def keras_cache_folder() -> Path:
    """Where ``keras.utils.get_file`` keeps downloaded weights: ``$KERAS_HOME/models`` or ``~/.keras/models``."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models"


def imagenet_weights_file(name: str, input_shape: tuple[int, int, int]) -> str:
    """The file name Keras looks for in its cache for ``name``'s ImageNet weights at ``input_shape``."""
    height, width = input_shape[:2]
    rows = height if height == width and height in MOBILENET_SIZES else 224
    return BACKBONES[name].weights_file.format(rows=rows)


def build_backbone(name: str, input_shape: tuple[int, int, int], weights: str | None) -> keras.Model:
    """``keras.applications`` ``name`` without its classifier; ``weights``: imagenet, a file, or None.

    With ``imagenet``, Keras downloads the weights into its cache folder unless they are already
    there; without a network that fails, and the error names the file and the folder to put it in.
    """
    backbone = BACKBONES[name]
    if min(input_shape[:2]) < backbone.min_size:
        raise PipelineError(f"the {name} backbone needs images of at least {backbone.min_size}x{backbone.min_size}, "
                            f"got {input_shape[0]}x{input_shape[1]}: raise resize.size.")
    if weights not in (None, "imagenet") and not Path(weights).is_file():
        raise PipelineError(f"train.weights: no weights file at {weights}; give imagenet, none, or the path "
                            "of a weights file saved from the same backbone (model.save_weights).")
    if weights == "imagenet":
        cached = keras_cache_folder() / imagenet_weights_file(name, input_shape)
        logger.info("%s ImageNet weights: %s%s", name, cached, "" if cached.is_file() else " (downloading)")
    try:
        constructor = getattr(keras.applications, backbone.application)
        return constructor(include_top=False, weights=weights, input_shape=input_shape)
    except Exception as error:
        if weights == "imagenet" and "URL fetch failure" in str(error):
            file_name = imagenet_weights_file(name, input_shape)
            raise PipelineError(
                f"could not download the ImageNet weights of {name} ({error}). Without a network, put "
                f"{file_name} into {keras_cache_folder()}/ (Keras' cache; set KERAS_HOME to use another "
                "folder), or set train.weights to none or to a weights file."
            ) from None
        raise

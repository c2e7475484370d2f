"""What a classifier's outputs mean, whichever engine ran it (Keras, ONNX Runtime): class
probabilities, the test-time augmentations, and a whole split's probabilities batch by batch.
No Keras and no image decoding here, so that the stages and ``imgclf predict`` can all import it cheaply.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from imgclf.data.dataset import Split

TTA_MODES = ("none", "flip", "flip_translate")  # evaluate.tta and imgclf predict --tta


def class_probabilities(model_output: np.ndarray) -> np.ndarray:
    """(count, classes) probabilities from a model's output; a single sigmoid column means 2 classes.

    Rows are renormalised in float64: a float32 softmax sums to 1 only within rounding.
    """
    model_output = np.asarray(model_output, dtype=np.float64)
    if model_output.ndim == 2 and model_output.shape[1] == 1:
        positive = model_output[:, 0]
        model_output = np.stack([1.0 - positive, positive], axis=1)
    return model_output / model_output.sum(axis=1, keepdims=True)


def with_test_time_augmentation(run: Callable[[np.ndarray], np.ndarray], images: np.ndarray,
                                tta: str = "none") -> np.ndarray:
    """``run(images)``, the model's outputs; with ``tta="flip"`` averaged with those of the images
    mirrored left-right (test-time augmentation, as in the CIFAR-10 training speedruns); with
    ``"flip_translate"`` (airbench's multi-crop, six views) half that, and half the same of the image
    shifted one pixel up and left and one pixel down and right, its edges reflected."""
    if tta not in TTA_MODES:
        raise ValueError(f"unknown test-time augmentation {tta!r}; choose one of {', '.join(TTA_MODES)}")

    def with_mirror(views: np.ndarray) -> np.ndarray:
        return (run(views) + run(np.ascontiguousarray(views[:, :, ::-1]))) / 2

    if tta == "flip":
        return with_mirror(images)
    if tta == "flip_translate":
        padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
        shifted = (with_mirror(np.ascontiguousarray(padded[:, :-2, :-2]))
                   + with_mirror(np.ascontiguousarray(padded[:, 2:, 2:]))) / 2
        return (with_mirror(images) + shifted) / 2
    return run(images)


def predict_split(run: Callable[[np.ndarray], np.ndarray], split: Split, batch_size: int,
                  tta: str = "none") -> np.ndarray:
    """(count, classes) probabilities of ``split``'s images, ``batch_size`` at a time through ``run``
    (a classifier's outputs, e.g. :meth:`imgclf.serving.model_folder.Classifier.outputs`), with
    ``tta`` as :func:`with_test_time_augmentation`. Holds the outputs, never all the pixels."""
    outputs = [with_test_time_augmentation(run, batch, tta) for batch in split.blocks(batch_size)]
    if not outputs:
        raise ValueError("the split holds no images to predict")
    return class_probabilities(np.concatenate(outputs))

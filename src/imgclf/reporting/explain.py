"""Where the model looks: class-activation heatmaps from the gradients, in the Grad-CAM family
(Selvaraju et al., 2017; the Keras Grad-CAM example).

The model is cut after its last spatial feature map (the last convolutional block, or a transfer
backbone's output): ``features`` maps images to that map, ``head`` maps the map to what the final
``classifier`` layer reads. The heatmap is HiResCAM's (Draelos and Carin, 2020): at each position,
the gradient of the class's score (the classifier's output before its softmax or sigmoid, as both
papers use) with respect to the map, times the map, summed over channels; negatives dropped, scaled
to the image. Grad-CAM first averages the gradient over the positions, which blurs the map of a
network that flattens its features; after global pooling the two give the same map. Before the
softmax, because a probability at 0.999 has almost no gradient left.

The cut is checked, not assumed: ``classifier(head(features(images)))`` must give the model's own
outputs. A network where no cut gives a spatial map (a backbone that shrinks the image to 1x1, no
convolution at all) raises :class:`ExplainError` saying so, instead of drawing noise. Gradients come
from TensorFlow's ``GradientTape`` or ``jax.grad``, whichever backend Keras runs on.

The evaluate stage predicts with ONNX Runtime. Where the train stage wrote the two ONNX graphs of
the cut (:mod:`imgclf.serving.heatmap_models`: a small model on TensorFlow), it draws the same
heatmaps without gradients (:mod:`imgclf.reporting.heatmaps`); elsewhere it needs Keras for these
gradients and draws the galleries in a process of its own
(:class:`imgclf.reporting.heatmap_galleries.HeatmapGalleries`, which runs this module), which imports
Keras while the stage goes on with everything else.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.data.dataset import Split
from imgclf.modeling.backend import import_keras
from imgclf.plumbing.errors import PipelineError
from imgclf.reporting.heatmaps import scaled_to_images

import_keras()  # the fast way: the heatmaps' process (main, below) starts with this import
import keras  # noqa: E402  (imported by the line above)

from imgclf.modeling.models import INPUT_LAYERS  # noqa: E402  (they see the image, not features of it)

logger = logging.getLogger(__name__)

CUT_TOLERANCE = 1e-4  # |model(x) - head(features(x))|, as the export check's


HEATMAP_BATCH = 16  # images whose heatmaps are computed together: the memory of 16 images' gradients


class ExplainError(PipelineError):
    """This network (at this image size, on this backend) has no heatmap to give."""


@dataclass(frozen=True)
class GradCam:
    """A model cut after its last spatial feature map (``layer``)."""

    features: keras.Model
    head: keras.Model
    classifier: keras.layers.Dense
    layer: str

    @classmethod
    def of(cls, model: keras.Model, check_images: np.ndarray) -> GradCam:
        """Cut ``model``; ``check_images`` (a few inputs) confirm that the cut gives its outputs."""
        backend = keras.backend.backend()
        if backend not in ("tensorflow", "jax"):
            raise ExplainError(f"heatmaps need gradients from TensorFlow or JAX; Keras runs on {backend}")
        position = _last_spatial_layer(model)
        layers = model.layers
        cut, classifier = layers[position], layers[-1]
        if not isinstance(classifier, keras.layers.Dense):
            raise ExplainError(f"{model.name} does not end in a dense classifier layer: no class scores to follow")
        if isinstance(cut, keras.Model):  # a backbone: its .output is its own graph's, so rebuild the chain
            pixels = keras.Input(shape=model.input_shape[1:])
            mapped = pixels
            for layer in layers[1:position + 1]:
                mapped = layer(mapped)
            features = keras.Model(pixels, mapped)
        else:
            features = keras.Model(model.inputs[0], cut.output)
        feature_map = keras.Input(shape=features.output_shape[1:])
        outputs = feature_map
        for layer in layers[position + 1:-1]:
            outputs = layer(outputs)
        head = keras.Model(feature_map, outputs)
        explained = cls(features, head, classifier, cut.name)
        expected = keras.ops.convert_to_numpy(model(check_images, training=False))
        rebuilt = keras.ops.convert_to_numpy(
            classifier(head(features(check_images, training=False), training=False)))
        if not np.allclose(expected, rebuilt, atol=CUT_TOLERANCE):
            raise ExplainError(f"{model.name} is not a chain after {cut.name}: no Grad-CAM cut reproduces its outputs")
        return explained

    def feature_maps(self, images: np.ndarray) -> np.ndarray:
        """The last spatial feature map of each image: float32 (n, height, width, channels)."""
        return keras.ops.convert_to_numpy(self.features(images, training=False)).astype(np.float32)

    def heatmaps(self, images: np.ndarray, classes: Sequence[int] | np.ndarray,
                 feature_maps_of: Callable[[np.ndarray], np.ndarray] | None = None) -> list[np.ndarray | None]:
        """For each image, where the evidence for its class lies: (height, width) in [0, 1], the
        image's size; ``None`` where the map holds no evidence for the class at all.

        ``feature_maps_of`` replaces :meth:`feature_maps` (a test gives the ONNX graph's maps)."""
        classes = np.asarray(classes, dtype=np.int64)
        feature_maps_of = feature_maps_of or self.feature_maps
        maps = []
        # HEATMAP_BATCH images at a time: a gallery may hold 8 images of each of 100 classes, and
        # the activations and gradients of all at once would grow with the number of classes
        for start in range(0, len(images), HEATMAP_BATCH):
            feature_maps = np.asarray(feature_maps_of(images[start:start + HEATMAP_BATCH]), dtype=np.float32)
            gradients = _gradients(self.head, self.classifier, feature_maps, classes[start:start + HEATMAP_BATCH])
            # HiResCAM: each position's own gradient times its activation. With Grad-CAM's gradient
            # averaged over the positions, simple_cnn put 0.37 of its map on the square's quadrant of
            # tests/test_explain.py, against 0.93 here.
            maps.extend((gradients * feature_maps).sum(axis=-1))
        height, width = images.shape[1:3]
        return scaled_to_images(maps, height, width)

    def scores_model(self) -> keras.Model:
        """The feature map to the class scores before the softmax or sigmoid: ``head`` and the
        classifier's weights, what :mod:`imgclf.serving.heatmap_models` converts to ONNX."""
        feature_map = keras.Input(shape=self.features.output_shape[1:])
        penultimate = self.head(feature_map, training=False)
        scores = keras.Model(feature_map, keras.ops.matmul(penultimate, self.classifier.kernel) + self.classifier.bias)
        # It reads the classifier's weights itself, so it must compute as the classifier does: built under
        # the train stage's mixed global policy, it would read them in bfloat16 (3.5e-3 of a map's peak off)
        scores.dtype_policy = self.classifier.dtype_policy
        return scores


def _last_spatial_layer(model: keras.Model) -> int:
    """The position in ``model.layers`` of the last layer with a (height, width, channels) output."""
    for position in range(len(model.layers) - 1, 0, -1):
        layer = model.layers[position]
        shape = layer.output.shape
        if len(shape) != 4:
            continue
        if layer.name in INPUT_LAYERS:
            break
        pooled_to_one = isinstance(layer, keras.layers.MaxPooling2D | keras.layers.AveragePooling2D)
        if shape[1] == 1 and shape[2] == 1 and pooled_to_one:
            continue  # a pooling to one position (airbench's): the map before it is the last with places
        if shape[1] == 1 and shape[2] == 1:
            raise ExplainError(f"{model.name}'s last feature map ({layer.name}) is 1x1 at {model.input_shape[1]}x"
                               f"{model.input_shape[2]} pixels: it has no place to point at; larger images "
                               "(resize.size) give it one")
        return position
    raise ExplainError(f"{model.name} has no convolutional feature map to explain")


def _class_scores(penultimate: Any, classifier: keras.layers.Dense, classes: Any) -> Any:
    """Sum over the batch of each image's class score, before the softmax; for a single sigmoid
    unit (2 classes), its logit for class 1 and minus it for class 0. keras.ops on the backend's own
    tensors, so that GradientTape and jax.grad both follow it."""
    ops = keras.ops
    logits = ops.matmul(penultimate, classifier.kernel) + classifier.bias
    if logits.shape[-1] == 1:
        chosen = ops.where(ops.equal(classes, 1), logits[:, 0], -logits[:, 0])
    else:
        chosen = ops.take_along_axis(logits, ops.expand_dims(classes, 1), axis=1)[:, 0]
    return ops.sum(chosen)


def _gradients(head: keras.Model, classifier: keras.layers.Dense, feature_maps: np.ndarray,
               classes: np.ndarray) -> np.ndarray:
    """d score(class) / d feature map, per image, through ``head`` and the classifier's weights."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        mapped = tf.convert_to_tensor(feature_maps)
        with tf.GradientTape() as tape:
            tape.watch(mapped)
            evidence = _class_scores(head(mapped, training=False), classifier, tf.convert_to_tensor(classes))
        return np.asarray(tape.gradient(evidence, mapped))
    import jax
    import jax.numpy as jnp

    def evidence_of(mapped: Any) -> Any:
        return _class_scores(head(mapped, training=False), classifier, jnp.asarray(classes))

    return np.asarray(jax.grad(evidence_of)(jnp.asarray(feature_maps)))


def explainer(model: keras.Model, check_images: np.ndarray) -> tuple[Callable[..., list[np.ndarray | None]] | None,
                                                                   str]:
    """``GradCam.of(model).heatmaps``, or None and the reason where this network has no heatmap."""
    try:
        explained = GradCam.of(model, check_images)
    except ExplainError as error:
        logger.warning("no heatmaps: %s", error)
        return None, str(error)
    return explained.heatmaps, f"heatmaps from {explained.layer}"


def draw_heatmap_galleries(model: keras.Model, split: Split, probabilities: np.ndarray, class_names: Sequence[str],
                           mistakes: int, per_class: int, folder: Path) -> str | None:
    """``mistakes_heatmaps.png`` and ``samples_heatmaps.png`` in ``folder``: the mistakes gallery and
    the samples grid with where the model looked; the layer the heatmaps come from, or None where
    this network has none (both figures then say why)."""
    from imgclf.reporting.heatmap_galleries import draw_galleries, draw_no_heatmaps

    heatmaps, heatmaps_from = explainer(model, split.read(np.arange(min(4, len(split)))))
    if heatmaps is None:
        draw_no_heatmaps(heatmaps_from, folder)
        return None
    draw_galleries(heatmaps, split, probabilities, class_names, mistakes, per_class, folder)
    return heatmaps_from


def main(arguments: Sequence[str] | None = None) -> None:
    """The process of :class:`imgclf.reporting.heatmap_galleries.HeatmapGalleries` for a model whose
    heatmaps need Keras: both galleries of one split, from the gradients."""
    from imgclf.modeling.modelio import load_model
    from imgclf.reporting.heatmap_galleries import DrawGalleries, serve_galleries_job

    def prepare(job: dict[str, Any]) -> DrawGalleries:
        model = load_model(Path(job["model"]))
        return lambda split, probabilities, folder: draw_heatmap_galleries(
            model, split, probabilities, job["class_names"], job["mistakes"], job["per_class"], folder)

    serve_galleries_job(arguments, main.__doc__ or "", prepare)


if __name__ == "__main__":
    from imgclf.plumbing.stage import run_stage

    run_stage(main)

"""HiResCAM heatmaps without gradients: from any function that maps a feature map to class scores.

:mod:`imgclf.reporting.explain` computes the heatmap from the Keras model's gradients: at each
position of the last spatial feature map ``A``, ``sum_k A[p, k] * d score / d A[p, k]``. That sum is
the derivative of the score along ``A[p]`` itself: ``d/dt score(A with A[p] scaled by 1 + t)`` at
``t = 0``. So it needs no gradient at all, only the class scores of slightly scaled copies of the
map: ``(score(A[p] * (1 + h)) - score(A[p] * (1 - h))) / (2 h)``, one pair of copies per position.

``h`` is 1e-8, below float32's relative spacing (2^-24, 6e-8): a scaled copy of a float32 value
passes no other float32 value, so where the scores take a maximum over places (``fast_cnn``'s global
max pooling), the copies stay on the side of the kink where the gradient is taken. With ``h = 1e-6``
they did not: a photo whose channel had its two largest places 1.4e-6 apart got half the credit at
both, 0.049 of its map's peak away from Keras' heatmap. An exact tie between two places still
gives each half, as TensorFlow's gradient of a maximum does. In float64 the differences agree with
TensorFlow's gradients to 2.5e-6 of a map's peak or better (measured on 80 flower photos:
``simple_cnn`` 2.5e-6, ``fast_cnn`` 1.8e-7, ``airbench`` 3.6e-7).

This is what lets the evaluate stage draw its heatmaps with ONNX Runtime, which has no gradients,
instead of importing TensorFlow: :class:`OnnxHeatmaps` runs the two ONNX graphs that
:mod:`imgclf.serving.heatmap_models` writes (checked against Keras' heatmaps), and :func:`main` is
the process of :class:`imgclf.reporting.heatmap_galleries.HeatmapGalleries` that draws the
galleries with them.

Nothing here imports Keras or TensorFlow; the functions take plain callables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from imgclf.plumbing.onnx_runtime import onnx_session

if TYPE_CHECKING:
    import onnxruntime

    from imgclf.data.dataset import Split

STEP = 1e-8  # h: the relative scaling of a position's features, below float32's spacing (see the module)
COPIES_BYTES = 32 * 2**20  # the scaled copies of one image's map sent to the scores at once

LAYER_KEY = "heatmaps_from"  # the features graph's metadata: the layer its maps come from
FEATURE_MAP_NAME = "feature_map"  # the scores graph's input

# (feature maps, float64 (n, height, width, channels)) -> class scores before the softmax or sigmoid, (n, classes)
Scores = Callable[[np.ndarray], np.ndarray]


def class_scores(logits: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Each row's score for its class: the logit; for a single sigmoid unit (2 classes), its logit for
    class 1 and minus it for class 0 (as :func:`imgclf.reporting.explain._class_scores`)."""
    if logits.shape[-1] == 1:
        return np.where(classes == 1, logits[:, 0], -logits[:, 0])
    return np.take_along_axis(logits, classes[:, None], axis=1)[:, 0]


def hires_cam(feature_map: np.ndarray, scores: Scores, class_index: int) -> np.ndarray:
    """HiResCAM of one image's ``feature_map`` (height, width, channels) for ``class_index``, before
    negatives are dropped: (height, width), by central differences of ``scores`` (see the module)."""
    height, width, channels = feature_map.shape
    positions = height * width
    base = feature_map.astype(np.float64).reshape(1, positions, channels)
    per_call = max(1, COPIES_BYTES // (2 * base.nbytes))
    values = np.empty(positions, dtype=np.float64)
    for start in range(0, positions, per_call):
        chosen = np.arange(start, min(start + per_call, positions))
        # row i of each batch scales position chosen[i] by (1 + STEP) or (1 - STEP), and only it
        scaling = np.ones((len(chosen), positions, 1))
        scaling[np.arange(len(chosen)), chosen, 0] = 1 + STEP
        raised = base * scaling
        scaling[np.arange(len(chosen)), chosen, 0] = 1 - STEP
        lowered = base * scaling
        copies = np.concatenate([raised, lowered]).reshape(-1, height, width, channels)
        classes = np.full(len(copies), class_index, dtype=np.int64)
        chosen_scores = class_scores(np.asarray(scores(copies), dtype=np.float64), classes)
        values[chosen] = (chosen_scores[:len(chosen)] - chosen_scores[len(chosen):]) / (2 * STEP)
    return values.reshape(height, width)


def scaled_to_images(maps: Iterable[np.ndarray], height: int, width: int) -> list[np.ndarray | None]:
    """Each map with its negatives dropped, divided by its peak and resized to the image: (height,
    width) in [0, 1]; ``None`` where the map holds no evidence for the class at all."""
    results: list[np.ndarray | None] = []
    for heat in maps:
        heat = np.maximum(heat, 0.0)
        peak = float(heat.max())
        if not np.isfinite(peak) or peak <= 0:
            results.append(None)
            continue
        scaled = Image.fromarray((heat / peak).astype(np.float32), mode="F").resize((width, height),
                                                                                     Image.Resampling.BILINEAR)
        results.append(np.clip(np.asarray(scaled), 0.0, 1.0))
    return results


def heatmaps_by_differences(feature_maps_of: Callable[[np.ndarray], np.ndarray], scores: Scores,
                            images: np.ndarray, classes: Sequence[int] | np.ndarray,
                            batch_size: int = 16) -> list[np.ndarray | None]:
    """For each image, where the evidence for its class lies (as :meth:`imgclf.reporting.explain.GradCam.heatmaps`):
    ``feature_maps_of`` maps a batch of images to their last spatial feature maps, ``scores`` those
    maps to the class scores before the softmax."""
    classes = np.asarray(classes, dtype=np.int64)
    maps: list[np.ndarray] = []
    for start in range(0, len(images), batch_size):
        feature_maps = feature_maps_of(images[start:start + batch_size])
        maps.extend(hires_cam(feature_map, scores, int(class_index))
                    for feature_map, class_index in zip(feature_maps, classes[start:start + batch_size], strict=True))
    height, width = images.shape[1:3]
    return scaled_to_images(maps, height, width)


@dataclass(frozen=True)
class OnnxHeatmaps:
    """The two graphs of a model folder's ``heatmaps/`` (:mod:`imgclf.serving.heatmap_models`) in
    ONNX Runtime: ``features`` maps images to the last spatial feature map, ``scores`` that map to
    the class scores before the softmax, in float64."""

    features: onnxruntime.InferenceSession
    scores: onnxruntime.InferenceSession
    layer: str

    @classmethod
    def open(cls, features_file: Path, scores_file: Path) -> OnnxHeatmaps:
        features = onnx_session(features_file)
        layer = features.get_modelmeta().custom_metadata_map.get(LAYER_KEY, "the last feature map")
        return cls(features, onnx_session(scores_file), layer)

    def feature_maps(self, images: np.ndarray) -> np.ndarray:
        """The features graph's last spatial feature map of each image: float32 (n, height, width, channels)."""
        return self.features.run(None, {self.features.get_inputs()[0].name: images.astype(np.float32)})[0]

    def heatmaps(self, images: np.ndarray, classes: Sequence[int] | np.ndarray,
                 feature_maps_of: Callable[[np.ndarray], np.ndarray] | None = None) -> list[np.ndarray | None]:
        """As :meth:`imgclf.reporting.explain.GradCam.heatmaps`: one map in [0, 1] per image, or None.

        ``feature_maps_of`` replaces the features graph: the train stage's check gives Keras' own
        maps, to check the scores graph on its own (:mod:`imgclf.serving.heatmap_models`)."""

        def scores_of(feature_maps: np.ndarray) -> np.ndarray:
            return self.scores.run(None, {FEATURE_MAP_NAME: feature_maps.astype(np.float64)})[0]

        return heatmaps_by_differences(feature_maps_of or self.feature_maps, scores_of, images, classes)


def main(arguments: Sequence[str] | None = None) -> None:
    """The process of :class:`imgclf.reporting.heatmap_galleries.HeatmapGalleries` for a model folder
    with ONNX heatmap graphs: both galleries of one split, without Keras."""
    from imgclf.reporting.heatmap_galleries import DrawGalleries, draw_galleries, serve_galleries_job

    def prepare(job: dict[str, Any]) -> DrawGalleries:
        graphs = OnnxHeatmaps.open(Path(job["features"]), Path(job["scores"]))

        def draw(split: Split, probabilities: np.ndarray, folder: Path) -> str:
            draw_galleries(graphs.heatmaps, split, probabilities, job["class_names"], job["mistakes"],
                           job["per_class"], folder)
            return f"heatmaps from {graphs.layer}"

        return draw

    serve_galleries_job(arguments, main.__doc__ or "", prepare)


if __name__ == "__main__":
    from imgclf.plumbing.stage import run_stage

    run_stage(main)

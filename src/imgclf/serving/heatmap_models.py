"""The model folder's heatmap graphs (``models/heatmaps/``): the evaluate stage's heatmaps in ONNX
Runtime, without TensorFlow.

The evaluate stage predicts with ``model.onnx``; only its heatmap galleries needed Keras, for the
gradients of :mod:`imgclf.reporting.explain`, and importing TensorFlow for them was the longest
part of the stage (about 4-7 s on 2 cores, against 2.5 s for all the rest). The train stage, where
Keras and the model are loaded already, cuts the model as the heatmaps do
(:class:`imgclf.reporting.explain.GradCam`) and writes the two halves as ONNX graphs:

===================  =========================================================================
``features.onnx``    images to the last spatial feature map (float32); its metadata
                     ``heatmaps_from`` names the layer
``scores.onnx``      that feature map to the class scores before the softmax or sigmoid, in
                     float64: :mod:`imgclf.reporting.heatmaps` takes differences of them
===================  =========================================================================

They are kept only where each gives what Keras does on the check split's first images: the
features graph Keras' feature maps, and the scores graph, from Keras' own maps, Keras' heatmaps,
each to within ``CHECK_TOLERANCE`` of a map's peak.

Each graph is checked on its own: the two together need not give Keras' heatmap to that tolerance
when both are right. Where a network pools its map by a maximum (``fast_cnn``'s global one,
``airbench``'s 3x3 windows), a channel's two largest places can lie as close as the feature maps'
float32 rounding: 1.4e-6 apart in one of 80 flower photos through ``fast_cnn``, whose ONNX and
TensorFlow maps differ by up to 9.5e-7. Where two lie closer than the graphs' maps differ, the
rounding can order them one way in ONNX Runtime and the other in TensorFlow, and each heatmap then
credits a different place, each the photo's HiResCAM to within float32's rounding.

They are written by the training process, for a model small enough to be converted there
(:func:`imgclf.serving.model_folder.onnx_copy_in_training`), and only where the map has at most
``MAX_POSITIONS`` places: a larger map costs more evaluations of the scores than one gradient does.
Without them the evaluate stage draws its heatmaps with Keras, in a process of its own, as before.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from imgclf.reporting.heatmaps import FEATURE_MAP_NAME, LAYER_KEY, OnnxHeatmaps

if TYPE_CHECKING:
    import keras

logger = logging.getLogger(__name__)

HEATMAPS_FOLDER = "heatmaps"
FEATURES_FILE = "features.onnx"
SCORES_FILE = "scores.onnx"

MAX_POSITIONS = 256  # 16x16: two score evaluations per position, where Keras needs one gradient
CHECK_IMAGES = 16  # of the check split, compared with Keras' heatmaps before the graphs are kept
CHECK_TOLERANCE = 1e-4  # the largest difference allowed, as a share of a map's peak (measured: 3e-7)


def heatmap_graphs(model_dir: Path) -> tuple[Path, Path] | None:
    """The features and scores graphs of ``model_dir``, or None where the train stage wrote none."""
    folder = Path(model_dir) / HEATMAPS_FOLDER
    graphs = folder / FEATURES_FILE, folder / SCORES_FILE
    if not all(path.is_file() for path in graphs):
        logger.debug("no %s: the heatmaps need Keras", folder)
        return None
    return graphs


class HeatmapModelsError(Exception):
    """The graphs could not be made, or do not give Keras' heatmaps: the evaluate stage uses Keras."""


def add_heatmap_models(model_dir: Path, check_split: Path, model: keras.Model) -> bool:
    """Write ``model_dir/heatmaps`` from ``model``, the folder's model in memory, checked on the
    split folder ``check_split``; whether it was kept. Where it was not, one line says why."""
    from imgclf.plumbing.files import atomic_directory

    folder = Path(model_dir) / HEATMAPS_FOLDER
    try:
        with atomic_directory(folder) as staging:
            _write_checked(model, check_split, staging)
    except HeatmapModelsError as error:
        logger.info("no %s: %s; the evaluate stage draws its heatmaps with Keras", folder, error)
        return False
    except Exception as error:  # tf2onnx's and ONNX Runtime's errors are of many types
        logger.warning("no %s: %s: %s; the evaluate stage draws its heatmaps with Keras", folder,
                       type(error).__name__, error)
        return False
    return True


def _write_checked(model: keras.Model, check_split: Path, staging: Path) -> None:
    import onnx

    from imgclf.data.dataset import open_split
    from imgclf.reporting.explain import ExplainError, GradCam
    from imgclf.serving.export import serving_copy
    from imgclf.serving.onnx_conversion import as_float64, convert_to_onnx

    with open_split(check_split) as split:  # the check compares heatmaps: its labels play no part
        images = split.read(np.arange(min(CHECK_IMAGES, len(split))))
    serving_model = serving_copy(model)  # in float32: tf2onnx has no bfloat16
    try:
        cut = GradCam.of(serving_model, images[:4])
    except ExplainError as error:
        raise HeatmapModelsError(str(error)) from error
    height, width = cut.features.output_shape[1:3]
    if height * width > MAX_POSITIONS:
        raise HeatmapModelsError(f"its feature map has {height}x{width} places, more than the {MAX_POSITIONS} "
                                 "whose differences cost less than Keras' gradients")
    features = convert_to_onnx(cut.features)
    onnx.helper.set_model_props(features, {LAYER_KEY: cut.layer})
    onnx.save(features, str(staging / FEATURES_FILE))
    onnx.save(as_float64(convert_to_onnx(cut.scores_model(), input_name=FEATURE_MAP_NAME)),
              str(staging / SCORES_FILE))

    probabilities = np.asarray(serving_model.predict(images, verbose=0))
    if probabilities.shape[-1] == 1:  # a single sigmoid unit: class 1 above one half
        classes = (probabilities[:, 0] > 0.5).astype(np.int64)
    else:
        classes = probabilities.argmax(axis=1)
    graphs = OnnxHeatmaps.open(staging / FEATURES_FILE, staging / SCORES_FILE)
    features_difference = feature_map_difference(cut.feature_maps(images), graphs.feature_maps(images))
    if features_difference > CHECK_TOLERANCE:
        raise HeatmapModelsError(f"its feature maps differ from Keras' by up to {features_difference:.2e} of a "
                                 f"map's peak (allowed: {CHECK_TOLERANCE:g}) on {len(images)} images")
    expected = cut.heatmaps(images, classes)
    actual = graphs.heatmaps(images, classes, feature_maps_of=cut.feature_maps)
    difference = max((heatmap_difference(one, other) for one, other in zip(expected, actual, strict=True)), default=0.0)
    if difference > CHECK_TOLERANCE:
        raise HeatmapModelsError(f"its heatmaps differ from Keras' by up to {difference:.2e} of a map's peak "
                                 f"(allowed: {CHECK_TOLERANCE:g}) on {len(images)} images")
    logger.info("heatmaps from %s in ONNX: max |difference| from Keras' %.1e of the peak (feature maps %.1e) "
                "on %d images", cut.layer, difference, features_difference, len(images))


def feature_map_difference(expected: np.ndarray, actual: np.ndarray) -> float:
    """The largest |difference| of two batches of feature maps, each image's as a share of the peak
    |value| of its ``expected`` map (0 where that map is all zeros and so is the other)."""
    peaks = np.abs(expected).reshape(len(expected), -1).max(axis=1)
    differences = np.abs(expected - actual).reshape(len(expected), -1).max(axis=1)
    shares = np.where(peaks > 0, differences / np.where(peaks > 0, peaks, 1.0), np.where(differences > 0, np.inf, 0.0))
    return float(shares.max(initial=0.0))


def heatmap_difference(expected: np.ndarray | None, actual: np.ndarray | None) -> float:
    """The largest |difference| of two heatmaps in [0, 1] (0 where neither has one, inf where one has)."""
    if expected is None or actual is None:
        return 0.0 if expected is None and actual is None else float("inf")
    return float(np.max(np.abs(expected - actual)))

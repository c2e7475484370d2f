"""The evaluate stage's heatmaps without TensorFlow: HiResCAM by differences of ONNX class scores
(imgclf.reporting.heatmaps, imgclf.serving.heatmap_models) against Keras' gradients (imgclf.reporting.explain).

Unit: the differences give the gradient's map of functions whose gradient is known; float64 ONNX
graphs compute what their float32 originals do. Model smoke: on real flower photos, the ONNX graphs
give Keras' heatmaps for networks with each kind of head, and say why where they are not written.
End to end: the evaluate stage, on real photos, draws the same galleries from the graphs as from
Keras' gradients, and neither it nor its heatmaps' process imports TensorFlow.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgclf.reporting.heatmaps import class_scores, heatmaps_by_differences, hires_cam
from tests.helpers import PROJECT_ROOT, command_env, require_shared_dataset

FLOWER_CLASSES = ("daisy", "dandelion", "roses", "sunflowers", "tulips")


# unit ------------------------------------------------------------------------------------------------


def test_the_differences_of_a_linear_score_are_its_weights_times_the_map():
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(4, 5, 3, 2))  # (height, width, channels, classes)
    feature_map = rng.normal(size=(4, 5, 3)).astype(np.float32)

    def scores(maps: np.ndarray) -> np.ndarray:
        return np.einsum("nhwc,hwck->nk", maps, weights) + 7.0

    for class_index in (0, 1):
        expected = (feature_map * weights[..., class_index]).sum(axis=-1)
        # atol: float64 rounding of the scores over 2h
        np.testing.assert_allclose(hires_cam(feature_map, scores, class_index), expected, atol=1e-6)


def test_the_differences_of_a_relu_head_are_its_gradient_times_the_map():
    rng = np.random.default_rng(1)
    hidden, classifier = rng.normal(size=(2 * 2 * 3, 8)), rng.normal(size=(8, 3))
    feature_map = rng.uniform(0, 1, size=(2, 2, 3))

    def scores(maps: np.ndarray) -> np.ndarray:
        return np.maximum(maps.reshape(len(maps), -1) @ hidden, 0) @ classifier

    active = (feature_map.reshape(-1) @ hidden) > 0
    gradient = (hidden * active) @ classifier[:, 2]  # d score_2 / d map, by hand
    expected = (feature_map.reshape(-1) * gradient).reshape(2, 2, 3).sum(axis=-1)
    np.testing.assert_allclose(hires_cam(feature_map, scores, 2), expected, atol=1e-6)


def test_the_differences_of_a_max_over_places_credit_only_the_largest_even_one_float32_step_ahead():
    largest = np.float32(0.67)
    second = np.nextafter(largest, np.float32(0))  # 6e-8 below it: the closest two places can lie
    feature_map = np.array([[[largest], [second]], [[0.1], [0.2]]], dtype=np.float32)

    def scores(maps: np.ndarray) -> np.ndarray:  # global max pooling, then one weight per class
        return maps.max(axis=(1, 2)) * np.array([3.0, -2.0])

    expected = np.array([[3.0 * largest, 0.0], [0.0, 0.0]])  # as the gradient: all of it at the maximum
    np.testing.assert_allclose(hires_cam(feature_map, scores, 0), expected, atol=1e-6)


def test_a_single_sigmoid_unit_scores_class_0_as_minus_its_logit():
    logits = np.array([[2.0], [3.0]])
    np.testing.assert_array_equal(class_scores(logits, np.array([1, 0])), [2.0, -3.0])


def test_a_map_with_no_evidence_gives_none_and_the_others_are_scaled_to_the_image():
    images = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    maps = {0: np.array([[1.0, -1.0], [0.0, 3.0]]), 1: -np.ones((2, 2))}

    def scores(copies: np.ndarray) -> np.ndarray:  # class 0: the map's sum, so its heatmap is the map
        total = copies.sum(axis=(1, 2))
        return np.concatenate([total, -total], axis=1)

    def feature_maps_of(batch: np.ndarray) -> np.ndarray:
        return np.stack([maps[0][..., None], maps[1][..., None]])[:len(batch)]

    first, second = heatmaps_by_differences(feature_maps_of, scores, images, [0, 0])
    assert second is None
    assert first is not None and first.shape == (8, 8) and first.max() == 1.0 and first.min() == 0.0


def test_feature_maps_differ_by_each_images_share_of_its_own_peak():
    from imgclf.serving.heatmap_models import feature_map_difference

    expected = np.array([[[[2.0, -4.0]]], [[[0.5, 0.25]]]])  # peaks |-4| and 0.5
    actual = expected + np.array([[[[0.0, 0.4]]], [[[0.01, 0.0]]]])
    assert feature_map_difference(expected, actual) == pytest.approx(0.1)  # 0.4 / 4, not 0.4 / 0.5
    zeros = np.zeros((1, 1, 1, 2))
    assert feature_map_difference(zeros, zeros) == 0.0
    assert feature_map_difference(zeros, zeros + 1e-9) == float("inf")


def test_a_float64_copy_of_an_onnx_graph_computes_what_the_float32_one_does():
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    from imgclf.serving.onnx_conversion import as_float64

    rng = np.random.default_rng(2)
    weights = rng.normal(size=(6, 4)).astype(np.float32)
    half = numpy_helper.from_array(np.array(0.5, dtype=np.float32), "half")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["product"]),
         helper.make_node("Constant", [], ["half"], value=half),
         helper.make_node("Mul", ["product", "half"], ["scaled"]),
         helper.make_node("Relu", ["scaled"], ["y"])],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])], [numpy_helper.from_array(weights, "w")])
    narrow = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    wide = as_float64(narrow)
    onnx.checker.check_model(wide)
    inputs = rng.normal(size=(5, 6))
    narrow_out = onnxruntime.InferenceSession(narrow.SerializeToString()).run(None, {"x": inputs.astype(np.float32)})[0]
    wide_out = onnxruntime.InferenceSession(wide.SerializeToString()).run(None, {"x": inputs})[0]
    assert wide_out.dtype == np.float64
    np.testing.assert_allclose(wide_out, narrow_out, atol=1e-5)
    assert narrow.graph.initializer[0].data_type == TensorProto.FLOAT  # the original is left as it was


# model smoke, on real photos ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photo_split(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """About 80 real flower photos at 64x64, as a split folder; and the images and labels."""
    from imgclf.data.dataset import ImageSet, save_image_set

    root = tmp_path_factory.mktemp("heatmap-photos")
    with tarfile.open(require_shared_dataset("flowers-photos.tar")) as tar:
        members = [member for member in tar if member.isfile() and member.name.endswith(".jpg")][::25]
        tar.extractall(root / "photos", members=members, filter="data")
    files = sorted((root / "photos").rglob("*.jpg"))
    images = np.stack([np.asarray(Image.open(file).convert("RGB").resize((64, 64))) for file in files])
    labels = np.array([FLOWER_CLASSES.index(file.parent.name) for file in files], dtype=np.int32)
    for split in ("val", "test"):
        save_image_set(root / split, ImageSet(images, labels, tuple(map(str, files)), FLOWER_CLASSES))
    return root, images, labels


def trained(name: str, images: np.ndarray, labels: np.ndarray):
    import keras

    from imgclf.modeling.models import build_model
    from imgclf.training.loop import make_deterministic

    # as the train stage trains: TensorFlow's op determinism on. It is a process-wide switch that any
    # earlier training test of the process turns on, and it changes the kernels' rounding: on here,
    # the test sees the same kernels whichever tests ran before it
    make_deterministic(0)
    model = build_model(name, images.shape[1:], len(FLOWER_CLASSES), seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    model.fit(images, labels, epochs=2, batch_size=16, verbose=0)  # batch norm statistics that are not the start's
    return model


@pytest.mark.slow
@pytest.mark.parametrize("name", ["simple_cnn", "fast_cnn", "airbench"])  # flatten+dense, max pooling, pool to 1x1
def test_the_onnx_graphs_give_keras_heatmaps_on_real_photos(name, photo_split, tmp_path):
    """Each graph gives what Keras does on every photo: the features graph Keras' feature maps, the
    scores graph Keras' heatmaps from the same maps. Both together give each photo Keras' HiResCAM
    of the ONNX feature maps, and Keras' own heatmap on all but the rare photo where a channel's
    largest places are closer than float32's rounding (heatmap_models' docstring)."""
    from imgclf.modeling.models import AUGMENTATION_LAYER
    from imgclf.reporting.explain import GradCam
    from imgclf.reporting.heatmaps import OnnxHeatmaps
    from imgclf.serving.export import without_layer
    from imgclf.serving.heatmap_models import (
        CHECK_TOLERANCE,
        add_heatmap_models,
        feature_map_difference,
        heatmap_difference,
        heatmap_graphs,
    )

    def largest_difference(expected: list, actual: list) -> float:
        return max(heatmap_difference(one, other) for one, other in zip(expected, actual, strict=True))

    root, images, labels = photo_split
    model = trained(name, images, labels)
    assert add_heatmap_models(tmp_path, root / "val", model)
    graphs = heatmap_graphs(tmp_path)
    assert graphs is not None
    onnx_heatmaps = OnnxHeatmaps.open(*graphs)
    serving_model = without_layer(model, AUGMENTATION_LAYER)
    cut = GradCam.of(serving_model, images[:4])
    assert onnx_heatmaps.layer == cut.layer
    classes = serving_model.predict(images, verbose=0).argmax(axis=1)
    keras_maps, onnx_maps = cut.feature_maps(images), onnx_heatmaps.feature_maps(images)
    expected = cut.heatmaps(images, classes)
    from_keras_maps = onnx_heatmaps.heatmaps(images, classes, feature_maps_of=cut.feature_maps)
    actual = onnx_heatmaps.heatmaps(images, classes)
    keras_of_onnx_maps = cut.heatmaps(images, classes, feature_maps_of=onnx_heatmaps.feature_maps)

    assert feature_map_difference(keras_maps, onnx_maps) <= CHECK_TOLERANCE
    assert sum(heat is not None for heat in expected) >= len(images) // 2
    assert largest_difference(expected, from_keras_maps) <= CHECK_TOLERANCE
    assert largest_difference(keras_of_onnx_maps, actual) <= CHECK_TOLERANCE
    apart = [index for index, (one, other) in enumerate(zip(expected, actual, strict=True))
             if heatmap_difference(one, other) > CHECK_TOLERANCE]
    assert len(apart) <= len(images) // 20, f"{len(apart)} of {len(images)} photos' heatmaps differ: {apart}"


@pytest.mark.slow
def test_a_model_trained_in_bfloat16_gets_its_heatmap_graphs_in_float32(photo_split, tmp_path):
    """tf2onnx has no bfloat16 type: the graphs are made from the model's float32 copy, and they
    compute in float32 although the train stage writes them under its mixed global policy (the scores
    graph's model, built there, read the classifier's weights in bfloat16: 3.5e-3 of a map's peak off
    on photos)."""
    from imgclf.serving.heatmap_models import add_heatmap_models, heatmap_graphs
    from tests.helpers import global_dtype_policy

    root, images, labels = photo_split
    with global_dtype_policy("mixed_bfloat16"):  # as the train stage sets it, until its process ends
        model = trained("fast_cnn", images, labels)
        assert model.get_layer("classifier").dtype_policy.name == "float32"  # the output layer, as always
        assert any(layer.dtype_policy.name == "mixed_bfloat16" for layer in model.layers)
        assert add_heatmap_models(tmp_path, root / "val", model)
    assert heatmap_graphs(tmp_path) is not None


@pytest.mark.slow
def test_a_feature_map_with_too_many_places_keeps_the_heatmaps_in_keras(photo_split, tmp_path, caplog):
    from imgclf.modeling.models import build_model
    from imgclf.serving.heatmap_models import HEATMAPS_FOLDER, MAX_POSITIONS, add_heatmap_models

    root, images, _ = photo_split
    model = build_model("simple_cnn", (96, 96, 3), len(FLOWER_CLASSES), seed=0)  # a 24x24 map: 576 places
    model.predict(np.zeros((1, 96, 96, 3), np.uint8), verbose=0)
    from imgclf.data.dataset import ImageSet, save_image_set

    large = np.stack([np.asarray(Image.fromarray(image).resize((96, 96))) for image in images[:8]])
    save_image_set(tmp_path / "check", ImageSet(large, np.zeros(8, np.int32), tuple("abcdefgh"), FLOWER_CLASSES))
    with caplog.at_level(logging.INFO):
        assert not add_heatmap_models(tmp_path / "models", tmp_path / "check", model)
    assert not (tmp_path / "models" / HEATMAPS_FOLDER).exists()
    assert f"24x24 places, more than the {MAX_POSITIONS}" in caplog.text and "with Keras" in caplog.text


# end to end: the evaluate stage ------------------------------------------------------------------------


@pytest.mark.slow
def test_the_evaluate_stage_draws_the_same_heatmaps_from_onnx_without_tensorflow(photo_split, tmp_path):
    from imgclf.data.preprocessing import Preprocessing
    from imgclf.plumbing.timeline import TIMELINE_VARIABLE
    from imgclf.serving.heatmap_models import HEATMAPS_FOLDER, add_heatmap_models
    from imgclf.serving.model_folder import add_onnx_copy, write_model_folder

    root, images, labels = photo_split
    model = trained("simple_cnn", images, labels)
    with_graphs = tmp_path / "models"
    with_graphs.mkdir()
    preprocessing = Preprocessing(size=(64, 64), mode="stretch", max_megapixels=200.0)
    write_model_folder(model, with_graphs, FLOWER_CLASSES, preprocessing)
    assert add_onnx_copy(with_graphs, root / "val", model) is not None
    assert add_heatmap_models(with_graphs, root / "val", model)
    keras_only = tmp_path / "keras-only"
    shutil.copytree(with_graphs, keras_only)
    shutil.rmtree(keras_only / HEATMAPS_FOLDER)
    shutil.copy(PROJECT_ROOT / "params.yaml", tmp_path / "params.yaml")

    galleries, processes = {}, {}
    for name, model_dir in (("onnx", with_graphs), ("keras", keras_only)):
        outputs, timeline = tmp_path / name, tmp_path / f"{name}.jsonl"
        result = subprocess.run(
            [sys.executable, str(PROJECT_ROOT / "stages/evaluate.py"), "--model-dir", str(model_dir),
             "--test", str(root / "test"), "--val", str(root / "val"), "--metrics", f"{outputs}/evaluate.json",
             "--class-scores", f"{outputs}/class_scores.csv", "--predictions", f"{outputs}/predictions.csv",
             "--roc", f"{outputs}/roc.csv", "--precision-recall", f"{outputs}/precision_recall.csv",
             "--figures", f"{outputs}/figures", "--label-issues", f"{outputs}/label_issues.csv"],
            cwd=tmp_path, env={**command_env(), TIMELINE_VARIABLE: str(timeline)}, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
        assert result.returncode == 0, result.stdout[-4000:]
        assert "drew where the model looked (heatmaps from" in result.stdout
        processes[name] = [json.loads(line) for line in timeline.read_text().splitlines()]
        galleries[name] = {gallery: np.asarray(Image.open(outputs / f"figures/{gallery}_heatmaps.png").convert("RGB"))
                           for gallery in ("mistakes", "samples")}

    # from the graphs: the heatmaps' process runs ONNX Runtime, and neither process imports TensorFlow
    assert sorted(Path(record["script"]).stem for record in processes["onnx"]) == ["evaluate", "heatmaps"]
    assert not any(record["tensorflow"] for record in processes["onnx"])
    assert sorted(Path(record["script"]).stem for record in processes["keras"]) == ["evaluate", "explain"]
    for gallery, picture in galleries["onnx"].items():
        other = galleries["keras"][gallery]
        assert picture.shape == other.shape
        differing = np.abs(picture.astype(int) - other.astype(int)).max(axis=-1) > 2
        assert differing.mean() < 1e-3, (gallery, differing.mean())  # the same overlays, to the colour map's step

"""`imgclf export`: each format written, run by its own runtime, and matched against the Keras model."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime
import pytest

from imgclf.cli import main
from imgclf.data.dataset import ImageSet, save_image_set
from imgclf.modeling.modelio import load_model
from imgclf.modeling.models import AUGMENTATION_LAYER, build_model
from imgclf.modeling.params import AugmentParams
from imgclf.serving.export import (
    TOLERANCE,
    ExportError,
    export_model,
    mixed_precision_of,
    serving_copy,
    without_layer,
)
from tests.helpers import TINY_MODEL_CLASSES, global_dtype_policy, tiny_model_images

pytestmark = pytest.mark.slow  # they train a small model first (a few seconds)


@pytest.fixture(scope="module")
def test_split(tmp_path_factory):
    """Test images packed as the resize stage packs them."""
    path = tmp_path_factory.mktemp("test_split") / "test"
    images, labels = tiny_model_images(count_per_class=10, seed=7)
    save_image_set(path, ImageSet(images, labels.astype(np.int32), tuple(f"{number:03d}.png" for number in
                                                                         range(len(labels))), TINY_MODEL_CLASSES))
    return path


def test_every_format_round_trips_within_tolerance(tiny_model_dir, test_split, tmp_path, capsys):
    output = tmp_path / "exports"
    code = main(["export", "--format", "saved_model", "--format", "onnx", "--format", "tflite",
                 "--model-dir", str(tiny_model_dir), "--test", str(test_split), "--output", str(output)])
    assert code == 0
    report = json.loads((output / "report.json").read_text())
    assert set(report) == {"saved_model", "onnx", "tflite"}
    for check in report.values():
        assert check["images"] == 30 and check["max_abs_difference"] < TOLERANCE
        assert check["max_abs_difference"] < TOLERANCE and check["top1_agreement"] == 1.0
    assert (output / "saved_model" / "saved_model.pb").is_file()
    printed = capsys.readouterr().out
    assert printed.count("matches the Keras model on 30 test images") == 3

    # Independently of the command: the ONNX file, run by onnxruntime, classifies like the Keras model.
    images, labels = tiny_model_images(count_per_class=10, seed=7)
    session = onnxruntime.InferenceSession(str(output / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_outputs = session.run(None, {session.get_inputs()[0].name: images.astype(np.float32)})[0]
    keras_outputs = load_model(tiny_model_dir / "model.keras").predict(images.astype(np.float32), verbose=0)
    np.testing.assert_allclose(onnx_outputs, keras_outputs, atol=TOLERANCE)
    assert (onnx_outputs.argmax(axis=1) == labels).mean() == 1.0


def test_a_second_export_adds_to_the_report(tiny_model_dir, test_split, tmp_path):
    output = tmp_path / "exports"
    for export_format in ("onnx", "tflite"):
        assert main(["export", "--format", export_format, "--model-dir", str(tiny_model_dir),
                     "--test", str(test_split), "--output", str(output)]) == 0
    assert set(json.loads((output / "report.json").read_text())) == {"onnx", "tflite"}


def test_exports_leave_out_the_augmentation_layers_and_keep_the_outputs():
    model = build_model("simple_cnn", (16, 16, 3), 3, augment=AugmentParams(
        horizontal_flip=True, rotation=10, zoom=0.1, width_shift=0.1, shear=5, brightness=(0.9, 1.1),
        contrast=0.1), seed=0)
    stripped = without_layer(model, AUGMENTATION_LAYER)
    assert AUGMENTATION_LAYER in {layer.name for layer in model.layers}
    assert AUGMENTATION_LAYER not in {layer.name for layer in stripped.layers}
    batch = np.random.default_rng(0).integers(0, 256, size=(4, 16, 16, 3)).astype(np.float32)
    np.testing.assert_array_equal(stripped.predict(batch, verbose=0), model.predict(batch, verbose=0))


def test_an_unknown_format_names_the_allowed_ones(tmp_path):
    model = build_model("simple_cnn", (16, 16, 3), 3)
    with pytest.raises(ExportError, match="saved_model, onnx, tflite"):
        export_model(model, "coreml", tmp_path,
                     ImageSet(np.zeros((1, 16, 16, 3), np.uint8), np.zeros(1, np.int32), ("a.png",), ("a", "b")))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("network", ["fast_cnn", "airbench", "resnet20"])
def test_the_recipes_networks_export_to_onnx_within_tolerance(network, tmp_path):
    """airbench's exact GELU is an Erfc op in TensorFlow, which tf2onnx has no rule for: taught here."""
    model = build_model(network, (32, 32, 3), 5, seed=0)
    images = np.random.default_rng(1).integers(0, 256, size=(40, 32, 32, 3), dtype=np.uint8)
    check = export_model(model, "onnx", tmp_path, ImageSet(images, np.zeros(40, np.int32),
                                                           tuple(map(str, range(40))), tuple("abcde")))
    assert check.max_abs_difference < TOLERANCE and check.images == 40
    assert (tmp_path / "model.onnx").is_file()


def test_a_model_trained_in_bfloat16_exports_to_onnx_as_its_float32_copy(tmp_path):
    """tf2onnx has no bfloat16 type: a model of train.mixed_precision bfloat16 (or auto on a CPU with
    bf16 units) got no ONNX copy. Its export is now its float32 copy: the same weights, the same
    function, computed in float32."""
    with global_dtype_policy("mixed_bfloat16"):
        model = build_model("fast_cnn", (32, 32, 3), 5, augment=AugmentParams(horizontal_flip=True), seed=0)
    images = np.random.default_rng(1).integers(0, 256, size=(40, 32, 32, 3), dtype=np.uint8)
    check = export_model(model, "onnx", tmp_path, ImageSet(images, np.zeros(40, np.int32),
                                                           tuple(map(str, range(40))), tuple("abcde")))
    assert check.max_abs_difference < TOLERANCE and (tmp_path / "model.onnx").is_file()

    copy = serving_copy(model)
    assert mixed_precision_of(model) == "mixed_bfloat16" and mixed_precision_of(copy) is None
    assert AUGMENTATION_LAYER not in {layer.name for layer in copy.layers}
    for layer in copy.layers:
        for kept, trained in zip(layer.get_weights(), model.get_layer(layer.name).get_weights(), strict=True):
            np.testing.assert_array_equal(kept, trained)
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_outputs = session.run(None, {session.get_inputs()[0].name: images.astype(np.float32)})[0]
    np.testing.assert_allclose(onnx_outputs, copy.predict(images.astype(np.float32), verbose=0), atol=TOLERANCE)
    # the model itself, in bfloat16 (8 bits of mantissa), gives the same probabilities within its rounding
    np.testing.assert_allclose(onnx_outputs, model.predict(images.astype(np.float32), verbose=0), atol=0.02)


def test_converting_the_same_model_twice_in_one_process_gives_the_same_bytes():
    """Each conversion traces anew, so TensorFlow's and tf2onnx's process-wide counters differ between
    the two: a counter left in the file (once, the traced function's number in the graph's doc
    string) changes its bytes. Across processes the counters differ only sometimes (a fresh-clone CI
    run failed the test below once in three), within one they always do."""
    from imgclf.serving.onnx_conversion import convert_to_onnx

    model = build_model("fast_cnn", (16, 16, 3), 3, seed=0)
    model.predict(np.zeros((1, 16, 16, 3), np.float32), verbose=0)
    first, second = (convert_to_onnx(model).SerializeToString() for _ in range(2))
    assert first == second


def test_the_onnx_file_has_the_same_bytes_in_every_run(tmp_path):
    """tf2onnx's names come from a process-wide counter and hash-ordered sets: runs under other hash
    seeds and protobuf implementations must still write the same bytes, or DVC sees a new model."""
    import subprocess
    import sys

    from tests.helpers import command_env

    script = """
import sys
from pathlib import Path
import numpy as np
from imgclf.data.dataset import ImageSet
from imgclf.serving.export import export_model
from imgclf.modeling.models import build_model
from imgclf.training.loop import make_deterministic
make_deterministic(0)
model = build_model("fast_cnn", (16, 16, 3), 3, seed=0)
images = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
export_model(model, "onnx", Path(sys.argv[1]), ImageSet(images, np.zeros(8, np.int32), tuple("abcdefgh"), tuple("xyz")))
"""
    # protobuf's C implementation as in the training process, its pure-Python one as in a process of its
    # own (imgclf.serving.model_folder.add_onnx_copy): the same bytes whichever made the copy
    for seed, protobuf in (("1", "upb"), ("2", "upb"), ("3", "python")):
        subprocess.run([sys.executable, "-c", script, str(tmp_path / seed)], check=True, capture_output=True,
                       env={**command_env(), "PYTHONHASHSEED": seed,
                            "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": protobuf})
    written = {(tmp_path / seed / "model.onnx").read_bytes() for seed in ("1", "2", "3")}
    assert len(written) == 1

"""Export a trained model for serving, and check each export against the Keras model.

Formats: ``saved_model`` (TensorFlow SavedModel, for TF Serving; signature ``serve``), ``onnx``
(through tf2onnx, run by onnxruntime) and ``tflite`` (LiteRT flat buffer). Each export's outputs
on the given images are compared with the Keras model's: the largest absolute difference of a
probability must stay under :data:`TOLERANCE`. An export that fails the check is not kept.

All three go through TensorFlow, so exporting needs the TensorFlow backend. The export stage and
the train stage's ONNX copy run each export in a process of its own (:func:`export_in_own_process`,
which runs this module): an export that fails, runs out of memory or is killed takes nothing else
with it, and its memory is given back when it ends.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imgclf.modeling.backend import import_keras
from imgclf.plumbing.errors import PipelineError
from imgclf.plumbing.onnx_runtime import onnx_session
from imgclf.plumbing.stage import exit_reason

if TYPE_CHECKING:
    import keras

    from imgclf.data.dataset import Split

logger = logging.getLogger(__name__)
logging.getLogger("tf2onnx").setLevel(logging.WARNING)  # it logs each optimisation pass at INFO

TOLERANCE = 1e-4
# Images per forward pass of the check. The check's memory is the activations of one such batch in
# the Keras model and in the export's runtime: at 224x224, simple_cnn's check of 144 images in one
# block took 1.1 GB more than the conversion. 32, the default training batch, keeps it within what
# training needed.
CHECK_BATCH_SIZE = 32


class ExportError(PipelineError):
    """An export could not be made, or its outputs differ from the Keras model's."""


@dataclass(frozen=True)
class ExportCheck:
    """How one export compares with the Keras model on ``images`` inputs."""

    format: str
    path: str  # relative to the export folder
    images: int
    max_abs_difference: float
    top1_agreement: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def export_model(model: keras.Model, export_format: str, destination: Path, test_split: Split,
                 batch_size: int = CHECK_BATCH_SIZE) -> ExportCheck:
    """Write ``model`` in ``export_format`` under ``destination``; check it on every image of ``test_split``.

    The check reads the split a batch at a time: a test split of any size needs a batch's memory.
    """
    import keras

    if export_format not in FORMATS:
        raise ExportError(f"unknown export format {export_format!r}; choose one of {', '.join(FORMATS)}")
    serving_format = SERVING_FORMATS[export_format]
    if keras.backend.backend() != "tensorflow":
        raise ExportError(f"exporting needs the TensorFlow backend (this is {keras.backend.backend()}): "
                          "run it with KERAS_BACKEND=tensorflow.")
    serving_model = serving_copy(model)
    trained_in = mixed_precision_of(model)
    if trained_in:
        logger.info("the %s export computes in float32, where the model trained in %s", export_format, trained_in)
    # a rebuilt model must run once before Keras exports it
    serving_model.predict(np.zeros((1, *test_split.image_shape), np.float32), verbose=0)
    destination.mkdir(parents=True, exist_ok=True)
    final_path = destination / serving_format.output_name
    with tempfile.TemporaryDirectory(dir=destination, prefix=".export-") as scratch:
        staged = Path(scratch) / serving_format.output_name
        if export_format == "onnx":  # tf2onnx in bounded memory, the same bytes every run (onnx_conversion)
            import onnx

            from imgclf.serving.onnx_conversion import convert_to_onnx

            onnx.save(convert_to_onnx(serving_model), str(staged))
        else:
            serving_model.export(str(staged), format=serving_format.keras_format, verbose=False)
        run_export = serving_format.runner(staged)
        difference, agreeing = 0.0, 0
        for batch in test_split.blocks(batch_size):  # a batch at a time: the check's memory is one batch's
            inputs = batch.astype(np.float32)
            expected = np.asarray(serving_model.predict_on_batch(inputs))  # the trained model, as served
            actual = run_export(inputs)
            difference = max(difference, float(np.max(np.abs(actual - expected))))
            agreeing += int(np.sum(_top1(actual) == _top1(expected)))
        count = len(test_split)
        agreement = agreeing / count if count else 1.0
        check = ExportCheck(export_format, final_path.name, count, difference, agreement)
        if difference >= TOLERANCE:  # a check that fails raises: every ExportCheck returned passed
            raise ExportError(f"the {export_format} export differs from the Keras model by up to {difference:.2e} "
                              f"(allowed: {TOLERANCE:g}) on {count} images; it was not kept.")
        if final_path.is_dir():
            shutil.rmtree(final_path)
        staged.replace(final_path)
    logger.info("%s: %s, max |difference| %.2e on %d images, top-1 agreement %.4f",
                export_format, final_path, difference, count, agreement)
    return check


def export_in_own_process(model_file: Path, export_format: str, destination: Path, check_split: Path) -> ExportCheck:
    """:func:`export_model` of the ``.keras`` file ``model_file``, checked on the split folder
    ``check_split``, run in a new Python process (this module) on the TensorFlow backend.

    The process ends with the export, and so does its memory; if it fails, runs out of memory or is
    killed, :class:`ExportError` says how, and the caller's own work is untouched. The kernel is
    asked to choose it first when memory runs out (``oom_score_adj``). ONNX is converted with
    protobuf's pure-Python implementation, which gives back what tf2onnx's passes replace
    (:mod:`imgclf.serving.onnx_conversion`).
    """
    environment = {**os.environ, "KERAS_BACKEND": "tensorflow"}  # the .keras file loads on any backend
    if export_format == "onnx":
        environment["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "python"
    output_name = SERVING_FORMATS[export_format].output_name
    destination.mkdir(parents=True, exist_ok=True)
    # The process writes into a folder this one removes, whatever happens to it: a killed export
    # leaves nothing behind in the destination (for the train stage, a DVC output).
    with tempfile.TemporaryDirectory(dir=destination, prefix=".export-") as scratch:
        report = Path(scratch) / "check.json"
        command = [sys.executable, "-m", "imgclf.serving.export", "--model", str(model_file), "--format", export_format,
                   "--destination", scratch, "--check-split", str(check_split), "--report", str(report)]
        finished = subprocess.run(command, env=environment, stdin=subprocess.DEVNULL, check=False)
        if finished.returncode == 0 and report.is_file():
            final = destination / output_name
            if final.is_dir():
                shutil.rmtree(final)
            (Path(scratch) / output_name).replace(final)
            return ExportCheck(**json.loads(report.read_text()))
    raise ExportError(f"the {export_format} export of {model_file} was not made: its process "
                      f"{exit_reason(finished.returncode)}")


def export_all(model_file: Path, test_images: Path, formats: Sequence[str],
               destination: Path) -> dict[str, dict[str, object]]:
    """Export the ``.keras`` file ``model_file`` in each of ``formats``, each checked on ``test_images``
    (a split folder) in a process of its own.

    Returns the checks by format, also merged into ``destination/report.json``.
    """
    from imgclf.plumbing.files import read_json, write_json

    report_path = destination / "report.json"
    report = read_json(report_path) if report_path.is_file() else {}
    for export_format in formats:
        report[export_format] = export_in_own_process(model_file, export_format, destination, test_images).as_dict()
        write_json(report_path, report)  # after each: a later failure keeps the record of those made
    return report


def _top1(outputs: np.ndarray) -> np.ndarray:
    from imgclf.modeling.outputs import class_probabilities

    return class_probabilities(outputs).argmax(axis=1)


Runner = Callable[[np.ndarray], np.ndarray]  # one float32 NHWC batch in, the model's outputs out


def saved_model_runner(path: Path) -> Runner:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))  # held by the closure: its variables die with it
    return lambda batch: loaded.serve(batch).numpy()


def onnx_runner(path: Path) -> Runner:
    session = onnx_session(path)
    input_name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {input_name: batch})[0]


def tflite_runner(path: Path) -> Runner:
    import tensorflow as tf

    with warnings.catch_warnings():  # tf.lite.Interpreter warns that it moves to the ai-edge-litert package
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=str(path))
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]

    def run(batch: np.ndarray) -> np.ndarray:
        interpreter.resize_tensor_input(input_index, batch.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(input_index, batch)
        interpreter.invoke()
        return interpreter.get_tensor(output_index).copy()

    return run


def serving_copy(model: keras.Model) -> keras.Model:
    """``model`` as the exports and the heatmap graphs serve it: without its random augmentation
    (:func:`without_layer`), and computing in float32 where it trained in mixed precision.

    A mixed-precision model keeps its weights in float32 and computes in bfloat16 or float16.
    tf2onnx has no bfloat16 type (it stops with "unsupported numpy dtype 'bfloat16'"), so a model
    trained with ``train.mixed_precision: bfloat16`` (or ``auto`` on a CPU with bf16 units) got no
    ONNX copy and no heatmap graphs. The copy computes the same function with the same weights, in
    float32. A float32 model without augmentation is returned as it is.
    """
    from imgclf.modeling.models import AUGMENTATION_LAYER

    augmented = AUGMENTATION_LAYER in {layer.name for layer in model.layers}
    mixed = mixed_precision_of(model) is not None
    if not augmented and not mixed:
        return model
    config = model.get_config()
    if augmented:
        config = _config_without(config, AUGMENTATION_LAYER)
    if mixed:
        config = _policies_in_float32(config)
    return _rebuilt(model, config)


def mixed_precision_of(model: keras.Model) -> str | None:
    """The mixed dtype policy some of ``model``'s layers compute in (``mixed_bfloat16``), or None."""
    policies = {layer.dtype_policy.name for layer in model._flatten_layers()}
    return next((name for name in sorted(policies) if name.startswith("mixed_")), None)


def _policies_in_float32(node: Any) -> Any:
    """A model's config with every layer's mixed dtype policy (``mixed_bfloat16``, ``mixed_float16``)
    replaced by ``float32``."""
    if isinstance(node, dict):
        if node.get("class_name") == "DTypePolicy" and str(node["config"]["name"]).startswith("mixed_"):
            return {**node, "config": {**node["config"], "name": "float32"}}
        return {key: _policies_in_float32(value) for key, value in node.items()}
    if isinstance(node, (list, tuple)):
        return type(node)(_policies_in_float32(item) for item in node)
    return node


def without_layer(model: keras.Model, name: str) -> keras.Model:
    """A copy of a functional ``model`` with the one-input layer ``name`` taken out, weights kept.

    The random augmentation layers do nothing at inference, but their random ops stay in a traced
    graph, and ONNX and TFLite have no such ops; exports use the model without them.
    """
    if name not in {layer.name for layer in model.layers}:
        return model
    return _rebuilt(model, _config_without(model.get_config(), name))


def _config_without(config: dict[str, Any], name: str) -> dict[str, Any]:
    """A functional model's config with its one-input layer ``name`` taken out, its input passed on."""
    (removed,) = [layer for layer in config["layers"] if layer["name"] == name]
    (removed_input,) = removed["inbound_nodes"][0]["args"]
    source = removed_input["config"]["keras_history"]
    config = {**config, "layers": [layer for layer in config["layers"] if layer["name"] != name]}
    return _replace_history(config, [name, 0, 0], source)


def _rebuilt(model: keras.Model, config: dict[str, Any]) -> keras.Model:
    """The model of ``config`` (``model``'s, edited), with ``model``'s weights layer by layer."""
    import keras

    rebuilt = keras.Model.from_config(config)
    for layer in rebuilt.layers:
        layer.set_weights(model.get_layer(layer.name).get_weights())
    return rebuilt


def _replace_history(node: Any, old: list[Any], new: list[Any]) -> Any:
    if isinstance(node, dict):
        return {key: (list(new) if key == "keras_history" and list(value) == old else _replace_history(value, old, new))
                for key, value in node.items()}
    if isinstance(node, (list, tuple)):  # get_config() holds both
        return list(new) if list(node) == old else type(node)(_replace_history(item, old, new) for item in node)
    return node


@dataclass(frozen=True)
class ServingFormat:
    """One format of ``export.formats``: where it is written, how Keras writes it, how the check runs it."""

    output_name: str  # the file or folder under the export folder
    keras_format: str  # keras.Model.export's name for it
    runner: Callable[[Path], Runner]  # loads the written export and runs it, for the check against Keras


# The formats ``export.formats`` allows (imgclf.serving.params takes its names from here). Keras, and
# each format's runtime, are imported only when exporting: the CLI lists the formats without them.
SERVING_FORMATS: dict[str, ServingFormat] = {
    "saved_model": ServingFormat("saved_model", "tf_saved_model", saved_model_runner),
    "onnx": ServingFormat("model.onnx", "onnx", onnx_runner),
    "tflite": ServingFormat("model.tflite", "litert", tflite_runner),
}
FORMATS: tuple[str, ...] = tuple(SERVING_FORMATS)


def main(arguments: Sequence[str] | None = None) -> None:
    """The process of :func:`export_in_own_process`: one export of a ``.keras`` file, its check as JSON."""
    parser = argparse.ArgumentParser(description=export_in_own_process.__doc__)
    parser.add_argument("--model", type=Path, required=True, help="the .keras file")
    parser.add_argument("--format", choices=FORMATS, required=True)
    parser.add_argument("--destination", type=Path, required=True, help="the folder to write the export into")
    parser.add_argument("--check-split", type=Path, required=True, help="a split folder to check the export on")
    parser.add_argument("--report", type=Path, required=True, help="JSON file for the check")
    args = parser.parse_args(arguments)
    _volunteer_for_the_oom_killer()
    try:
        import_keras()  # the fast way: imgclf.modeling.backend.import_keras
        import tensorflow  # noqa: F401
    except ImportError:
        raise ExportError("exporting needs TensorFlow, which is not installed here (pip install -r "
                          "requirements.txt installs it)") from None
    from imgclf.data.dataset import open_split
    from imgclf.modeling.modelio import load_model

    model = load_model(args.model)
    with open_split(args.check_split) as check_split:  # the check compares outputs: its labels play no part
        check = export_model(model, args.format, args.destination, check_split)
    args.report.write_text(json.dumps(check.as_dict()))


def _volunteer_for_the_oom_killer() -> None:
    """Ask Linux to kill this process first when memory runs out, not the stage that started it."""
    try:
        Path("/proc/self/oom_score_adj").write_text("1000")
    except OSError as error:  # not Linux, or a sandbox that forbids it: the export runs all the same
        logger.debug("oom_score_adj not set: %s", error)


if __name__ == "__main__":
    from imgclf.plumbing.stage import run_stage

    run_stage(main)

"""Export a trained model for serving, and check each export against the Keras model.

Formats: ``saved_model`` (TensorFlow SavedModel, for TF Serving; signature ``serve``), ``onnx``
(through tf2onnx, run by onnxruntime) and ``tflite`` (LiteRT flat buffer). Each export's outputs
on the given images are compared with the Keras model's: the largest absolute difference of a
probability must stay under :data:`TOLERANCE`. An export that fails the check is not kept.

All three go through TensorFlow, so exporting needs the TensorFlow backend.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imgclf.plumbing.errors import PipelineError
from imgclf.serving.model_folder import CLASSES_FILE, KERAS_FILE, ONNX_FILE

if TYPE_CHECKING:
    import keras

    from imgclf.data.dataset import Split
    from imgclf.data.preprocessing import Preprocessing

logger = logging.getLogger(__name__)
logging.getLogger("tf2onnx").setLevel(logging.WARNING)  # it logs each optimisation pass at INFO

TOLERANCE = 1e-4
CHECK_BATCHES_PER_BLOCK = 8  # test images read at a time for the check: this many batches


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
    passed: bool

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def export_model(model: keras.Model, export_format: str, destination: Path, test_split: Split,
                 batch_size: int = 256) -> ExportCheck:
    """Write ``model`` in ``export_format`` under ``destination``; check it on every image of ``test_split``.

    The check reads the split a block at a time: a test split of any size needs a block's memory.
    """
    import keras

    from imgclf.modeling.models import AUGMENTATION_LAYER

    if export_format not in FORMATS:
        raise ExportError(f"unknown export format {export_format!r}; choose one of {', '.join(FORMATS)}")
    serving_format = SERVING_FORMATS[export_format]
    if keras.backend.backend() != "tensorflow":
        raise ExportError(f"exporting needs the TensorFlow backend (this is {keras.backend.backend()}): "
                          "run it with KERAS_BACKEND=tensorflow.")
    serving_model = without_layer(model, AUGMENTATION_LAYER)
    # a rebuilt model must run once before Keras exports it
    serving_model.predict(np.zeros((1, *test_split.image_shape), np.float32), verbose=0)
    destination.mkdir(parents=True, exist_ok=True)
    final_path = destination / serving_format.output_name
    with tempfile.TemporaryDirectory(dir=destination, prefix=".export-") as scratch:
        staged = Path(scratch) / serving_format.output_name
        if export_format == "onnx":
            _teach_tf2onnx_erfc()
        with warnings.catch_warnings():  # Keras' tf2onnx shim probes the removed np.object
            warnings.filterwarnings("ignore", message=".*np.object", category=FutureWarning)
            serving_model.export(str(staged), format=serving_format.keras_format, verbose=False)
        if export_format == "onnx":
            canonical_onnx_names(staged)
        run_export = serving_format.runner(staged)
        difference, agreeing = 0.0, 0
        for block in test_split.blocks(batch_size * CHECK_BATCHES_PER_BLOCK):
            inputs = block.astype(np.float32)
            expected = model.predict(inputs, batch_size=batch_size, verbose=0)  # the trained model, as evaluate runs it
            actual = np.concatenate([run_export(batch) for batch in _batches(inputs, batch_size)])
            difference = max(difference, float(np.max(np.abs(actual - expected))))
            agreeing += int(np.sum(_top1(actual) == _top1(expected)))
        count = len(test_split)
        agreement = agreeing / count if count else 1.0
        check = ExportCheck(export_format, final_path.name, count, difference, agreement,
                            passed=difference < TOLERANCE)
        if not check.passed:
            raise ExportError(f"the {export_format} export differs from the Keras model by up to {difference:.2e} "
                              f"(allowed: {TOLERANCE:g}) on {count} images; it was not kept.")
        if final_path.is_dir():
            shutil.rmtree(final_path)
        staged.replace(final_path)
    logger.info("%s: %s, max |difference| %.2e on %d images, top-1 agreement %.4f",
                export_format, final_path, difference, count, agreement)
    return check


def canonical_onnx_names(path: Path) -> None:
    """Put the graph's nodes in a canonical order and rename its tensors in that order (graph inputs
    and outputs keep theirs), so that the same model gives the same bytes, and DVC the same hash, on
    every run.

    tf2onnx names what it adds with a process-wide counter (``Transpose__36``), keeps one of each set
    of equal constants under whichever name a hash-ordered set gave first, and lists independent
    branches in either order: the graph was the same from run to run, its bytes were not. The order
    here is a topological one whose ties go to the node's layer path (counters left out), its op,
    and what it reads (a constant by its content).
    """
    import hashlib
    import heapq
    import re

    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    kept = {entry.name for entry in (*graph.input, *graph.output)}
    constants = {}
    for initializer in graph.initializer:
        content = onnx.TensorProto()
        content.CopyFrom(initializer)
        content.name = ""
        constants[initializer.name] = "constant:" + hashlib.sha256(content.SerializeToString()).hexdigest()
    nodes = list(graph.node)
    producer = {output: index for index, node in enumerate(nodes) for output in node.output}
    consumers: dict[int, list[int]] = {index: [] for index in range(len(nodes))}
    waiting = [0] * len(nodes)
    for index, node in enumerate(nodes):
        for source in {producer[name] for name in node.input if name in producer}:
            consumers[source].append(index)
            waiting[index] += 1
    tensors: dict[str, str] = {}

    def tensor(name: str) -> str:
        return name if not name or name in kept else tensors.setdefault(name, f"t{len(tensors)}")

    def counter_free(name: str) -> str:
        return re.sub(r"__\d+", "", name)

    def sort_key(index: int) -> tuple[str, str, tuple[str, ...]]:
        node = nodes[index]
        reads = tuple(tensors.get(name) or constants.get(name) or name for name in node.input)
        return counter_free(node.name), node.op_type, reads

    ready = [(sort_key(index), index) for index in range(len(nodes)) if waiting[index] == 0]
    heapq.heapify(ready)
    ordered: list[Any] = []
    while ready:
        _, index = heapq.heappop(ready)
        node = nodes[index]
        node.input[:] = [tensor(name) for name in node.input]
        node.output[:] = [tensor(name) for name in node.output]
        node.name = f"{counter_free(node.name)}__{len(ordered)}"
        ordered.append(node)
        for consumer in consumers[index]:
            waiting[consumer] -= 1
            if waiting[consumer] == 0:
                heapq.heappush(ready, (sort_key(consumer), consumer))
    if len(ordered) != len(nodes):
        raise ExportError(f"the ONNX graph in {path} has a cycle: {len(nodes) - len(ordered)} nodes never became ready")
    copies = [onnx.NodeProto() for _ in ordered]
    for copy, node in zip(copies, ordered, strict=True):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)
    for entries in (graph.initializer, graph.value_info):
        for entry in entries:
            entry.name = tensor(entry.name)
        by_name = sorted(entries, key=lambda entry: int(entry.name[1:]) if entry.name[1:].isdigit() else -1)
        copies_of = [type(entry)() for entry in by_name]
        for copy, entry in zip(copies_of, by_name, strict=True):
            copy.CopyFrom(entry)
        del entries[:]
        entries.extend(copies_of)
    unknown_sizes: dict[str, str] = {}  # tf2onnx's counter again: the batch size is "unk__176" or "unk__175"
    for entry in (*graph.input, *graph.output, *graph.value_info):
        for dimension in entry.type.tensor_type.shape.dim:
            if dimension.HasField("dim_param") and re.fullmatch(r"unk__\d+", dimension.dim_param):
                dimension.dim_param = unknown_sizes.setdefault(dimension.dim_param, f"unknown_{len(unknown_sizes)}")
    onnx.save(model, str(path))


_ERFC_TAUGHT = False


def _teach_tf2onnx_erfc() -> None:
    """Let tf2onnx convert TensorFlow's ``Erfc`` as ONNX's ``1 - Erf(x)``.

    Keras' exact GELU (``fast_cnn``'s activation) is ``0.5 x erfc(-x / sqrt 2)`` in TensorFlow, and
    tf2onnx 1.17 has no rule for ``Erfc``: without this every GELU network failed to export. In
    float32, ``1 - erf`` loses only what lies below 1e-7 of the activation.
    """
    global _ERFC_TAUGHT
    if _ERFC_TAUGHT:
        return
    from tf2onnx import utils
    from tf2onnx.handler import tf_op

    @tf_op("Erfc")
    class Erfc:  # registered by the decorator
        @classmethod
        def version_9(cls, ctx: Any, node: Any, **kwargs: Any) -> None:
            node.type = "Erf"  # ONNX has Erf from opset 9 on
            one = ctx.make_const(utils.make_name("erfc_one"),
                                 np.array(1, dtype=utils.map_onnx_to_numpy_type(ctx.get_dtype(node.output[0]))))
            complement = ctx.insert_new_node_on_output("Sub", node.output[0], name=utils.make_name(node.name),
                                                       inputs=[one.output[0], node.output[0]])
            ctx.copy_shape(node.output[0], complement.output[0])
            ctx.set_dtype(complement.output[0], ctx.get_dtype(node.output[0]))

    _ERFC_TAUGHT = True


def write_onnx_for_predictions(model: keras.Model, model_dir: Path, check_split: Split) -> ExportCheck | None:
    """``model_dir/model.onnx``, which ``imgclf predict`` runs without importing TensorFlow, checked on
    ``check_split`` (the train stage's validation split) as every export is.

    Where it cannot be made (another backend, a layer the converter lacks) or does not match, says
    why and returns None: the model is still saved, and predictions then load it in Keras.
    """
    try:
        return export_model(model, "onnx", model_dir, check_split)
    except Exception as error:  # any converter failure: the .keras model stays the model
        logger.warning("no %s: %s (%s); imgclf predict will load the Keras model instead, which starts slower",
                       Path(model_dir) / ONNX_FILE, error, type(error).__name__)
        return None


def write_model_folder(model: keras.Model, folder: Path, class_names: Sequence[str], preprocessing: Preprocessing,
                       check_split: Split) -> None:
    """The whole model folder for ``model`` (:mod:`imgclf.serving.model_folder`); its ONNX copy is
    checked against it on ``check_split``."""
    from imgclf.data.preprocessing import PREPROCESSING_FILE
    from imgclf.modeling.modelcard import write_model_card
    from imgclf.modeling.modelio import save_model
    from imgclf.plumbing.files import write_json

    save_model(model, folder / KERAS_FILE)
    write_onnx_for_predictions(model, folder, check_split)  # what `imgclf predict` runs, if it can be made
    write_json(folder / CLASSES_FILE, list(class_names))
    preprocessing.save(folder / PREPROCESSING_FILE)
    write_model_card(model, folder)


def export_all(model_dir: Path, test_images: Path, formats: Sequence[str],
               destination: Path) -> dict[str, dict[str, object]]:
    """Export the model of ``model_dir`` in each of ``formats``, each checked on ``test_images`` (a split folder).

    Returns the checks by format, also merged into ``destination/report.json``.
    """
    from imgclf.data.dataset import open_split
    from imgclf.modeling.modelio import load_model
    from imgclf.plumbing.files import read_json, write_json

    model = load_model(model_dir / KERAS_FILE)
    report_path = destination / "report.json"
    report = read_json(report_path) if report_path.is_file() else {}
    with open_split(test_images, read_json(model_dir / CLASSES_FILE)) as test_split:
        for export_format in formats:
            report[export_format] = export_model(model, export_format, destination, test_split).as_dict()
            write_json(report_path, report)  # after each: a later failure keeps the record of those made
    return report


def _top1(outputs: np.ndarray) -> np.ndarray:
    from imgclf.modeling.outputs import class_probabilities

    return class_probabilities(outputs).argmax(axis=1)


def _batches(inputs: np.ndarray, batch_size: int) -> list[np.ndarray]:
    return [inputs[start:start + batch_size] for start in range(0, len(inputs), batch_size)]


Runner = Callable[[np.ndarray], np.ndarray]  # one float32 NHWC batch in, the model's outputs out


def saved_model_runner(path: Path) -> Runner:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))  # held by the closure: its variables die with it
    return lambda batch: loaded.serve(batch).numpy()


def onnx_runner(path: Path) -> Runner:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
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


def without_layer(model: keras.Model, name: str) -> keras.Model:
    """A copy of a functional ``model`` with the one-input layer ``name`` taken out, weights kept.

    The random augmentation layers do nothing at inference, but their random ops stay in a traced
    graph, and ONNX and TFLite have no such ops; exports use the model without them.
    """
    if name not in {layer.name for layer in model.layers}:
        return model
    config = model.get_config()
    (removed,) = [layer for layer in config["layers"] if layer["name"] == name]
    (removed_input,) = removed["inbound_nodes"][0]["args"]
    source = removed_input["config"]["keras_history"]
    config["layers"] = [layer for layer in config["layers"] if layer["name"] != name]
    config = _replace_history(config, [name, 0, 0], source)
    import keras

    stripped = keras.Model.from_config(config)
    for layer in stripped.layers:
        layer.set_weights(model.get_layer(layer.name).get_weights())
    return stripped


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
    "onnx": ServingFormat(ONNX_FILE, "onnx", onnx_runner),
    "tflite": ServingFormat("model.tflite", "litert", tflite_runner),
}
FORMATS: tuple[str, ...] = tuple(SERVING_FORMATS)

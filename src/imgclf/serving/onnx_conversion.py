"""A Keras model as an ONNX graph, in memory bounded by the model's size, with the same bytes every run.

The conversion goes through tf2onnx (TensorFlow backend). Measured on ``simple_cnn`` at 224x224
(25.7 M parameters, 98 MiB of weights; benchmarks/README.md, "Memory after training"), tf2onnx as
``keras.Model.export(format="onnx")`` calls it took 37 s and 6 GB above the loaded model, and it
grows with the weights: VGG-16 (466 MiB) ran out of 24 GB. Two causes, each removed here:

- Freezing the variables into constants the default way runs TensorFlow's graph optimiser over
  the frozen weights (10 s, 2.2 GB). tf2onnx's ``large_model`` mode freezes without it, keeping
  the weights outside the graph while it is converted; :func:`convert_to_onnx` puts them back
  inline, so ``model.onnx`` stays one file.
- Each of tf2onnx's 24 optimiser passes rewrites every node's attributes into a new protobuf
  message. With protobuf's C implementation (upb) the replaced messages live in an arena that is
  only freed with the whole graph, so every pass kept another copy of the weights (98 MiB a pass).
  With protobuf's pure-Python implementation they are freed. The implementation is chosen when
  protobuf is first imported, so the conversion runs in a process of its own that sets
  ``PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python`` (:func:`imgclf.serving.export.export_in_own_process`).

Together: 1.5 s and about 4.4x the weights above the loaded model (the same graph: the same op counts,
outputs within 1.3e-7 of the former conversion's).

tf2onnx also names what it adds with a process-wide counter, lists independent branches in either
order, and writes the traced function's name, numbered by another process-wide counter, into the
graph's doc string; :func:`canonical_onnx_names` makes the bytes depend on the model only, so DVC
records the same hash for the same model.
"""

from __future__ import annotations

import hashlib
import heapq
import re
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from imgclf.plumbing.errors import PipelineError

if TYPE_CHECKING:
    import keras
    import onnx

INPUT_NAME = "images"


class OnnxConversionError(PipelineError):
    """The model could not be converted to ONNX."""


def convert_to_onnx(model: keras.Model, input_name: str = INPUT_NAME) -> onnx.ModelProto:
    """``model``'s inference graph as one self-contained ONNX model (weights inline), canonically
    named, its input ``input_name``.

    Needs the TensorFlow backend; the model must have been called (built) once.
    """
    import keras
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        raise OnnxConversionError(f"converting to ONNX needs the TensorFlow backend (this is "
                                  f"{keras.backend.backend()}): run it with KERAS_BACKEND=tensorflow.")
    with warnings.catch_warnings():  # Keras' shim probes the removed np.object
        warnings.filterwarnings("ignore", message=".*np.object", category=FutureWarning)
        # tf2onnx 1.17 predates NumPy 2; Keras' own ONNX export patches it with this (keras pinned in
        # requirements.txt), and the conversion here is that export's, in tf2onnx's large-model mode
        from keras.src.export.tf2onnx_lib import patch_tf2onnx

        patch_tf2onnx()
    import tf2onnx

    _teach_tf2onnx_erfc()

    signature = [tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name=input_name)]
    forward = tf.function(lambda images: model(images, training=False), input_signature=signature)
    onnx_model, external_weights = tf2onnx.convert.from_function(forward, signature, large_model=True)
    _inline_weights(onnx_model, external_weights.name_to_tensor_data)
    canonical_onnx_names(onnx_model)
    return onnx_model


def as_float64(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of the float32 ``model`` computing in float64: its weights, inputs, outputs, constants
    and casts. For what needs more digits than the model has (the differences of
    :mod:`imgclf.reporting.heatmaps`); an operator ONNX Runtime has no float64 kernel for fails
    when the session opens."""
    import onnx
    from onnx import numpy_helper

    wide = onnx.ModelProto()
    wide.CopyFrom(model)
    graph = wide.graph

    def widened(tensor: onnx.TensorProto) -> onnx.TensorProto:
        return numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float64), tensor.name)

    for tensor in graph.initializer:
        if tensor.data_type == onnx.TensorProto.FLOAT:
            tensor.CopyFrom(widened(tensor))
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
            value.type.tensor_type.elem_type = onnx.TensorProto.DOUBLE
    for node in graph.node:
        if any(attribute.type == onnx.AttributeProto.GRAPH for attribute in node.attribute):
            raise OnnxConversionError(f"{node.op_type} holds a graph of its own: not widened to float64")
        for attribute in node.attribute:
            if node.op_type == "Cast" and attribute.name == "to" and attribute.i == onnx.TensorProto.FLOAT:
                attribute.i = onnx.TensorProto.DOUBLE
            elif attribute.type == onnx.AttributeProto.TENSOR and attribute.t.data_type == onnx.TensorProto.FLOAT:
                attribute.t.CopyFrom(widened(attribute.t))
    return wide


def _inline_weights(model: onnx.ModelProto, weights: dict[str, bytes]) -> None:
    """Move the tensors that tf2onnx's large-model mode kept outside the graph back into it."""
    import onnx

    for tensor in model.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        (location,) = [entry.value for entry in tensor.external_data if entry.key == "location"]
        tensor.raw_data = weights.pop(location)
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT
    if weights:
        raise OnnxConversionError(f"tf2onnx kept {len(weights)} tensors outside the graph that no initializer names: "
                                  f"{', '.join(sorted(weights)[:5])}")


def canonical_onnx_names(model: onnx.ModelProto) -> None:
    """Put the graph's nodes in a canonical order and rename its tensors in that order (graph inputs
    and outputs keep theirs), so that the same model gives the same bytes, and DVC the same hash, on
    every run.

    tf2onnx names what it adds with a process-wide counter (``Transpose__36``), keeps one of each set
    of equal constants under whichever name a hash-ordered set gave first, and lists independent
    branches in either order: the graph was the same from run to run, its bytes were not. The order
    here is a topological one whose ties go to the node's layer path (counters left out), its op,
    and what it reads (a constant by its content). The graph's doc string, "converted from
    b'__inference_<lambda>_705'", numbers the traced function by how many TensorFlow traced before it
    in the process (once in three runs of the same script, another number): it is replaced by one
    without the number.
    """
    import onnx

    graph = model.graph
    graph.doc_string = re.sub(r"_\d+'$", "'", graph.doc_string)
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
        raise OnnxConversionError(f"the ONNX graph has a cycle: {len(nodes) - len(ordered)} nodes never became ready")
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


_ERFC_TAUGHT = False


def _teach_tf2onnx_erfc() -> None:
    """Let tf2onnx convert TensorFlow's ``Erfc`` as ONNX's ``1 - Erf(x)``.

    Keras' exact GELU (the airbench networks' activation) is ``0.5 x erfc(-x / sqrt 2)`` in TensorFlow, and
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

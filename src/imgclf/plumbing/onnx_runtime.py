"""How every part of the pipeline opens an ONNX model in ONNX Runtime: the export check, the
evaluate stage, its heatmaps' process and ``imgclf predict``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnxruntime


def onnx_session(path: Path) -> onnxruntime.InferenceSession:
    """An ONNX Runtime session of ``path`` on the CPU.

    Without ONNX Runtime's memory arena, which keeps the largest batch's buffers until the session
    ends: the evaluate stage's heatmap process takes its memory while the stage still holds its own.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.enable_cpu_mem_arena = False
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

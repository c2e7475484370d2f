"""Quiet start-up: the lines TensorFlow, XLA, absl and JAX print on every good run, kept off the screen.

On a machine without a GPU, importing TensorFlow and starting a dataset prints, through C++
logging that Python cannot configure (``TF_CPP_MIN_LOG_LEVEL`` no longer reaches all of it):

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 ... cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
    E0000 ... cuda_platform.cc:52] failed call to cuInit: ... UNKNOWN ERROR (303)
    E0000 ... node_def_util.cc:682] NodeDef mentions attribute use_unbounded_threadpool ...

Lines that say ERROR and WARNING where nothing is wrong teach a user to ignore both. Every stage
sends its standard error through :func:`quiet_native_logs`, which drops exactly the lines of
:data:`EXPECTED` (each a message of a healthy machine) and passes everything else on at once,
progress bars included. ``IMGCLF_VERBOSE=1`` shows them all (``IMGCLF_VERBOSE=1 dvc repro``).
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import sys
import threading
from collections.abc import Iterator

VERBOSE_VARIABLE = "IMGCLF_VERBOSE"

# Each line on its own: what it says, on a machine where it means nothing is wrong.
EXPECTED = tuple(re.compile(pattern) for pattern in (
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR",  # absl's notice
    r"oneDNN custom operations are on",  # TensorFlow's note on floating-point round-off (CPU)
    r"Could not find cuda drivers on your machine, GPU will not be used",  # a CPU machine
    r"failed call to cuInit",  # the same, from XLA's CUDA platform
    r"cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized to use available CPU instructions",
    r"To enable the following instructions: .* in other operations, rebuild TensorFlow",
    r"NodeDef mentions attribute use_unbounded_threadpool which is not in the op definition",  # tf.data
    r"Unable to initialize backend 'tpu'|libtpu\.so",  # JAX looking for a TPU
    # Grappler, when tf2onnx freezes a small model's graph (the ONNX copy in the training process)
    r"devices\.cc:\d+\] Number of eligible GPUs \(core count >= \d+, compute capability >= [\d.]+\): 0",
    r"single_machine\.cc:\d+\] Starting new session",
    r"mlir_graph_optimization_pass\.cc:\d+\] MLIR V1 optimization pass is not enabled",
))


def is_expected(line: str) -> bool:
    return any(pattern.search(line) for pattern in EXPECTED)


@contextlib.contextmanager
def quiet_native_logs() -> Iterator[None]:
    """For the block, pass what is written to standard error (file descriptor 2: C++ libraries,
    Python, child processes) through a filter that drops the :data:`EXPECTED` lines."""
    if os.environ.get(VERBOSE_VARIABLE, "") not in ("", "0"):
        yield
        return
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    block_ended = threading.Event()
    forwarder = threading.Thread(target=_forward, args=(read_end, original, block_ended), name="stderr-filter",
                                 daemon=True)
    forwarder.start()
    try:
        yield
    finally:
        with contextlib.suppress(ValueError, OSError):  # Python's own stderr buffer, before fd 2 goes back
            sys.stderr.flush()
        os.dup2(original, 2)  # the pipe's write end is closed here, but may live on in child processes
        block_ended.set()
        forwarder.join(timeout=5)
        os.close(original)


def _forward(read_end: int, destination: int, block_ended: threading.Event) -> None:
    """Copy ``read_end`` to ``destination`` segment by segment (a segment ends at a newline or a
    carriage return, so progress bars still move), leaving out expected lines, until the pipe ends or,
    once ``block_ended`` is set, nothing more is waiting in it.

    Not only until the pipe ends: worker processes that outlive their work (joblib's, which cleanlab
    and scikit-learn start and keep for reuse) hold its write end open, and waiting for them cost each
    stage 5 seconds at exit."""
    pending = b""
    while True:
        ended = block_ended.is_set()  # before looking: whatever the block wrote is in the pipe by then
        if not select.select([read_end], [], [], 0.05)[0]:
            if ended:
                break
            continue
        chunk = os.read(read_end, 65536)
        if not chunk:
            break
        pending += chunk
        segments = re.split(rb"(?<=[\n\r])", pending)
        pending = segments.pop()  # what follows the last newline: not yet a whole segment
        kept = b"".join(segment for segment in segments
                        if not is_expected(segment.decode("utf-8", "replace")))
        if pending and b"\n" not in pending and len(pending) > 4096:  # a long run without newline: pass it on
            kept, pending = kept + pending, b""
        if kept:
            os.write(destination, kept)
    if pending and not is_expected(pending.decode("utf-8", "replace")):
        os.write(destination, pending)
    os.close(read_end)

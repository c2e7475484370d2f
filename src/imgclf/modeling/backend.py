"""Which Keras backend a stage runs: ``train.backend``, set before Keras is imported.

Keras reads its backend once, from ``KERAS_BACKEND`` (or ``~/.keras/keras.json``), when it is first
imported. Making it a param puts it in ``dvc.lock`` and ``dvc exp show``, so that
``dvc exp run -S train.backend=jax`` reruns the stages it changes and the runs can be told apart.
An environment that asks for another backend is refused rather than silently obeyed: a run would
otherwise record one backend and train on the other.
"""

from __future__ import annotations

import functools
import os
import platform
import sys

from imgclf.plumbing.errors import PipelineError
from imgclf.plumbing.stage import collector_paused

# TensorFlow runs its CPU convolutions through oneDNN by default only on CPUs with units for neural
# networks, such as AVX-512 VNNI, AVX-512 BF16 or AMX; on x86 CPUs without them (AVX2: most laptops)
# it takes Eigen's kernels: the airbench recipe's train stage ran at 121 images/s there, at 214 through
# oneDNN's (2-core AMD EPYC with AVX2, machine_limit.py; benchmarks/README.md, "oneDNN on a CPU without
# AVX-512"). A value a person set is kept.
ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"


def use_onednn_kernels() -> None:
    """Turn TensorFlow's oneDNN kernels on in this process and the processes it starts, on an x86 CPU,
    unless a person set :data:`ONEDNN_VARIABLE`; call it before TensorFlow loads."""
    if platform.machine().lower() in ("x86_64", "amd64"):
        os.environ.setdefault(ONEDNN_VARIABLE, "1")


def use_backend(backend: str, key: str = "train.backend") -> None:
    """Make ``backend`` Keras' backend in this process and the processes it starts; call it before
    anything imports Keras. With TensorFlow, its oneDNN kernels too (:func:`use_onednn_kernels`),
    where TensorFlow would not turn them on itself."""
    asked = os.environ.get("KERAS_BACKEND")
    if asked and asked != backend:
        raise PipelineError(f"KERAS_BACKEND={asked} is set, but params.yaml has {key}: {backend}. The backend is "
                            f"a param: unset KERAS_BACKEND, or run with -S {key}={asked}.")
    if "keras" in sys.modules and sys.modules["keras"].backend.backend() != backend:
        raise RuntimeError(f"Keras was imported on {sys.modules['keras'].backend.backend()} before {key} "
                           f"chose {backend}: call use_backend first")
    os.environ["KERAS_BACKEND"] = backend
    if backend == "tensorflow":
        use_onednn_kernels()


# Installed libraries that Keras and TensorFlow import at their own import, each in a guarded
# `try: import ... except ImportError`, for integrations this pipeline never uses: Keras' scikit-learn
# wrappers (scikit-learn, with SciPy's statistics under it) and TF Lite's converter of JAX functions.
# Together 0.6 s of the 2.4 s that importing Keras on TensorFlow takes (AMD EPYC, 2 cores).
UNUSED_BY_KERAS = ("sklearn", "jax")


def import_keras() -> None:
    """Import Keras, on the backend that :func:`use_backend` chose, the fast way: with the garbage
    collector paused (:func:`imgclf.plumbing.stage.collector_paused`, 1 s) and without the
    integrations of :data:`UNUSED_BY_KERAS` (0.6 s), each hidden while Keras and TensorFlow import
    so that their guarded imports find it missing. Anything imported afterwards imports them as
    usual; the JAX backend's own JAX is never hidden. Does nothing where Keras is imported already.
    A process that needs Keras calls it first thing."""
    if "keras" in sys.modules:
        return
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    hidden = [name for name in UNUSED_BY_KERAS if name not in sys.modules and name != backend]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # (import then raises ImportError)
    try:
        with collector_paused():
            import keras  # noqa: F401
    finally:
        for name in hidden:
            if sys.modules.get(name, "") is None:
                del sys.modules[name]


@functools.cache
def tensorflow_on_a_cpu() -> bool:
    """Whether Keras runs on TensorFlow and TensorFlow sees no GPU: fixed for the process, so asked
    once. The layers that train through TensorFlow's CPU kernels of their own ask it
    (:mod:`imgclf.modeling.batch_norm`, :mod:`imgclf.modeling.gelu`)."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return not tf.config.list_logical_devices("GPU")

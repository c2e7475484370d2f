"""Where training runs: the GPUs or the CPU, the precision, and the spread over devices and machines.

``train.distribution``:

- ``none``: one device (the first GPU when there is one, else the CPU);
- ``mirrored``: every GPU of this machine holds a copy of the model and takes a share of each batch
  (TensorFlow's ``MirroredStrategy``; with JAX, Keras' ``DataParallel``). Without GPUs, the
  CPU's logical devices (``IMGCLF_LOGICAL_CPUS=2`` splits the CPU in two, to try it out);
- ``multi_worker``: the same across machines, one process per machine, with the JAX backend:
  ``keras.distribution.initialize()`` and ``DataParallel`` over every machine's devices. The
  machines are described by ``TF_CONFIG`` (TensorFlow's format) or by Keras' variables
  ``KERAS_DISTRIBUTION_JOB_ADDRESSES``, ``..._NUM_PROCESSES`` and ``..._PROCESS_ID``. Each process
  feeds its share of every batch. (With the TensorFlow backend, Keras 3's ``fit`` fails under
  ``MultiWorkerMirroredStrategy``: keras-team/keras#20585; the stage says so and stops.);
- ``auto``: ``multi_worker`` when those variables are set, ``mirrored`` with two GPUs or more,
  else ``none``.

``train.batch_size`` is the global batch: each of n replicas takes batch_size / n images a step.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras

from imgclf.plumbing.errors import PipelineError

logger = logging.getLogger(__name__)

PRECISION_POLICIES = {"off": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
LOGICAL_CPUS_VARIABLE = "IMGCLF_LOGICAL_CPUS"
JAX_CLUSTER_VARIABLE = "KERAS_DISTRIBUTION_JOB_ADDRESSES"


@dataclass
class DeviceSetup:
    """What :func:`setup_devices` chose; build and compile the model inside ``scope``."""

    backend: str
    device: str  # e.g. "1 x NVIDIA H100 80GB HBM3" or "cpu (AMD EPYC, AVX-512 BF16)"
    accelerators: int
    distribution: str  # none | mirrored | multi_worker
    replicas: int
    precision: str  # the Keras dtype policy: float32 | mixed_float16 | mixed_bfloat16
    is_chief: bool = True  # the worker whose outputs count (every worker writes its own)
    scope: Any = field(default_factory=contextlib.nullcontext)
    shard: tuple[int, int] = (0, 1)  # (this process, processes): which share of each batch this process feeds

    def summary(self) -> dict[str, Any]:
        return {"backend": self.backend, "device": self.device, "distribution": self.distribution,
                "replicas": self.replicas, "precision": self.precision}


def resolve_distribution(setting: str, accelerators: int, cluster: bool) -> str:
    if setting != "auto":
        return setting
    if cluster:
        return "multi_worker"
    return "mirrored" if accelerators > 1 else "none"


def resolve_precision(setting: str, accelerators: int, cpu_bf16_units: bool = False) -> str:
    """``auto``: float16 mixed precision on a GPU (tensor cores); on a CPU, bfloat16 where it has bf16
    units that its kernels use (``cpu_bf16_units``), else float32 (where half precision is slower)."""
    if setting == "auto":
        if accelerators:
            return "mixed_float16"
        return "mixed_bfloat16" if cpu_bf16_units else "float32"
    return PRECISION_POLICIES[setting]


def setup_devices(distribution: str, mixed_precision: str) -> DeviceSetup:
    """Pick devices, precision and distribution for the current Keras backend; call before building the model.

    TensorFlow is told to take GPU memory as it needs it, not all of it at start.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        setup = _setup_tensorflow(distribution, mixed_precision)
    elif backend == "jax":
        setup = _setup_jax(distribution, mixed_precision)
    else:  # train.backend allows only these two, and is set before Keras is imported (modeling/backend.py)
        raise PipelineError(f"Keras runs on the {backend} backend; imgclf trains on tensorflow or jax: set "
                            "train.backend in params.yaml and leave KERAS_BACKEND unset.")
    keras.config.set_dtype_policy(setup.precision)
    logger.info("training on %s with the %s backend: %s distribution, %d replica(s), %s", setup.device, backend,
                setup.distribution, setup.replicas, setup.precision)
    return setup


def _logical_cpus_requested() -> int:
    value = os.environ.get(LOGICAL_CPUS_VARIABLE, "")
    if not value:
        return 0
    if not value.isdigit() or int(value) < 1:
        raise PipelineError(f"{LOGICAL_CPUS_VARIABLE}={value!r}: give a whole number of logical CPU devices, e.g. 2")
    return int(value)


# The widest vector instructions first: oneDNN (TensorFlow's CPU kernels) and XLA pick their code by
# these, so two CPUs with different ones give different last digits for the same params.
CPU_INSTRUCTION_SETS = (("amx_tile", "AMX"), ("avx512_bf16", "AVX-512 BF16"), ("avx512_vnni", "AVX-512 VNNI"),
                        ("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"))


# The x86 flags of the bf16 units that oneDNN multiplies bfloat16 with: train.mixed_precision: auto
# trains in bfloat16 on a CPU with either (1.26-1.31x float32's speed, benchmarks/README.md); without
# them TensorFlow emulates bfloat16: the airbench network trained at 10 images/s against float32's
# 106 on a 2-core AMD EPYC with AVX2, both through Eigen's kernels; float32 through oneDNN's, as the
# stages run it now, 214 (benchmarks/README.md, machine_limit.py, 2026-12-07).
BF16_UNIT_FLAGS = ("amx_bf16", "avx512_bf16")


def emulated_bfloat16_warning(precision: str, accelerators: int, cpu_bf16_units: bool, device: str) -> str | None:
    """What to tell a person who asked for bfloat16 (``train.mixed_precision: bfloat16``) on a CPU
    without bf16 units, where TensorFlow trains about ten times slower than in float32; ``None``
    where the precision is not bfloat16, a GPU computes, or the CPU has the units."""
    if precision != "mixed_bfloat16" or accelerators or cpu_bf16_units:
        return None
    return (f"train.mixed_precision: bfloat16 on a CPU without bf16 units ({device}; they are AVX-512 BF16 "
            "and AMX): TensorFlow emulates bfloat16 here, and trained the airbench network about 10x slower "
            "than in float32 on a 2-core AMD EPYC with AVX2 (benchmarks/README.md). Set "
            "train.mixed_precision: auto, which trains in float32 on this CPU and in bfloat16 where the "
            "units are, or off.")


def _cpu_fields(cpuinfo: str | None) -> dict[str, str]:
    """The fields of /proc/cpuinfo (or of ``cpuinfo``), its last processor's where it lists several (one
    CPU model, the same fields); none where it cannot be read."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return {}
    fields = dict(line.split(":", 1) for line in cpuinfo.splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in fields.items()}


def has_bf16_units(cpuinfo: str | None = None) -> bool:
    """Whether the CPU has bf16 units oneDNN uses (:data:`BF16_UNIT_FLAGS`)."""
    flags = set(_cpu_fields(cpuinfo).get("flags", "").split())
    return any(flag in flags for flag in BF16_UNIT_FLAGS)


def describe_cpu(cpuinfo: str | None = None) -> str:
    """``cpu (AMD EPYC, AVX-512 BF16)``: the CPU's model and its widest vector instructions, which
    decide its floating-point results (read from /proc/cpuinfo; plain ``cpu`` where it cannot be read)."""
    fields = _cpu_fields(cpuinfo)
    flags = set(fields.get("flags", "").split())
    widest = next((name for flag, name in CPU_INSTRUCTION_SETS if flag in flags), None)
    details = [part for part in (fields.get("model name"), widest) if part]
    return f"cpu ({', '.join(details)})" if details else "cpu"


def _setup_tensorflow(setting: str, mixed_precision: str) -> DeviceSetup:
    import tensorflow as tf

    cluster = bool(os.environ.get("TF_CONFIG"))
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    logical_cpus = _logical_cpus_requested()
    if logical_cpus:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * logical_cpus)
    names = [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name) for gpu in gpus]
    device = f"{len(gpus)} x {names[0]}" if gpus else describe_cpu()
    distribution = resolve_distribution(setting, len(gpus), cluster)
    bf16_units = has_bf16_units()
    precision = resolve_precision(mixed_precision, len(gpus), cpu_bf16_units=bf16_units)
    warning = emulated_bfloat16_warning(precision, len(gpus), bf16_units, device)
    if warning:
        logger.warning(warning)
    if distribution == "none":
        return DeviceSetup("tensorflow", device, len(gpus), distribution, 1, precision)
    if distribution == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or \
                  [d.name for d in tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(devices)
        return DeviceSetup("tensorflow", device, len(gpus), distribution, strategy.num_replicas_in_sync, precision,
                           scope=strategy.scope())
    raise PipelineError(
        "train.distribution multi_worker does not run with the TensorFlow backend: Keras 3's fit fails under "
        "TensorFlow's MultiWorkerMirroredStrategy (keras-team/keras#20585). Run every worker with "
        "train.backend: jax and the same TF_CONFIG (docs/training.md, \"Several GPUs and several machines\").")


def _jax_cluster_from_tf_config() -> dict[str, Any] | None:
    """Keras' multi-process settings from ``TF_CONFIG``: the first worker coordinates."""
    if not os.environ.get("TF_CONFIG"):
        return None
    config = json.loads(os.environ["TF_CONFIG"])
    workers = [*config.get("cluster", {}).get("chief", []), *config.get("cluster", {}).get("worker", [])]
    task = config.get("task", {})
    index = task.get("index", 0) + (len(config["cluster"].get("chief", [])) if task.get("type") == "worker" else 0)
    return {"job_addresses": workers[0], "num_processes": len(workers), "process_id": index}


def _setup_jax(setting: str, mixed_precision: str) -> DeviceSetup:
    import jax

    from_tf_config = None if os.environ.get(JAX_CLUSTER_VARIABLE) else _jax_cluster_from_tf_config()
    cluster = bool(os.environ.get(JAX_CLUSTER_VARIABLE)) or from_tf_config is not None
    if setting == "multi_worker" or (setting == "auto" and cluster):
        if not cluster:
            raise PipelineError(f"train.distribution multi_worker needs TF_CONFIG or {JAX_CLUSTER_VARIABLE}, "
                                "KERAS_DISTRIBUTION_NUM_PROCESSES and KERAS_DISTRIBUTION_PROCESS_ID "
                                "(docs/training.md, \"Several GPUs and several machines\").")
        keras.distribution.initialize(**(from_tf_config or {}))  # before the first look at the devices
    logical_cpus = _logical_cpus_requested()
    if logical_cpus:  # read when JAX first looks at its devices
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={logical_cpus}"
    devices = jax.devices()
    accelerators = [d for d in devices if d.platform != "cpu"]
    device = f"{len(accelerators)} x {accelerators[0].device_kind}" if accelerators else describe_cpu()
    distribution = resolve_distribution(setting, len(accelerators), cluster)
    # auto stays float32 on a CPU here: bfloat16's gain was measured through TensorFlow's oneDNN kernels only
    precision = resolve_precision(mixed_precision, len(accelerators))
    shard = (jax.process_index(), jax.process_count())
    if distribution != "none" and len(devices) > 1:
        data_parallel = keras.distribution.DataParallel(devices=devices)
        data_parallel.auto_shard_dataset = False  # each process feeds its own share (DeviceSetup.shard)
        keras.distribution.set_distribution(data_parallel)
    replicas = len(devices) if distribution != "none" else 1
    return DeviceSetup("jax", device, len(accelerators), distribution, replicas, precision,
                       is_chief=shard[0] == 0, shard=shard)

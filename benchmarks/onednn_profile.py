"""Where a training step's time goes inside oneDNN: each convolution by direction and shape, its TFLOP/s.

    .venv/bin/python benchmarks/onednn_profile.py                           # about 1 minute on 2 cores
    .venv/bin/python benchmarks/onednn_profile.py --model airbench --batch-size 1024

TensorFlow runs its convolutions, poolings and matrix products on CPUs through oneDNN, which logs
every primitive it runs, with its implementation and milliseconds, when ``ONEDNN_VERBOSE=1``. This
script runs ``--steps`` training steps of ``--model`` (as the train stage builds it, without the
augmentation, on one batch of random 32x32 images held in memory) in a child process with that
variable set, and prints from its log, after the matrix-multiply rate measured in the same run
(``machine_limit.py``):

1. the share of oneDNN's time per kind and direction of primitive (forward, gradient of the input,
   gradient of the weights);
2. every convolution shape per direction: calls, milliseconds a call, TFLOP/s (2 FLOPs a multiply-add).

It names the kernels oneDNN chose (``brg_conv_fwd:avx10_1_512_amx`` is the AMX one), which tells
whether the CPU's bf16 units are used, and which convolution falls short of the multiply. The child
runs with one inter-op thread (``--inter-op``) by default: with TensorFlow's default, independent
primitives run at the same time on the same cores and each one's milliseconds count the others'.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass

from targets import Targets  # benchmarks/targets.py, beside this script

START, END = "onednn-profile: timed steps start", "onednn-profile: timed steps end"
# a 2-D convolution's descriptor, e.g. mb512_ic384oc384_ih7oh7kh3sh1dh0ph1_iw7ow7kw3sw1dw0pw1 (g: groups)
SHAPE = re.compile(r"mb(\d+)_(?:g(\d+))?ic(\d+)oc(\d+)_ih\d+oh(\d+)kh(\d+)\w*?_iw\d+ow(\d+)kw(\d+)")


@dataclass(frozen=True)
class Primitive:
    """One primitive execution in oneDNN's verbose log."""

    kind: str  # convolution, pooling, reorder, ...
    implementation: str  # e.g. brgconv_bwd_w:avx10_1_512_amx
    direction: str  # forward_training, backward_data, backward_weights, ...
    shape: str  # oneDNN's problem descriptor, e.g. mb512_ic384oc384_ih7oh7kh3..._iw7ow7kw3...
    milliseconds: float


def parse_log(lines: list[str]) -> list[Primitive]:
    """The primitives executed between the child's two marks (``onednn_verbose,v1,primitive,exec`` lines)."""
    primitives, inside = [], False
    for line in lines:
        if line.startswith(START):
            inside = True
        elif line.startswith(END):
            break
        elif inside and line.startswith("onednn_verbose,") and ",primitive,exec," in line:
            fields = line.rstrip().split(",")
            # onednn_verbose,v1,primitive,exec,cpu,KIND,IMPLEMENTATION,DIRECTION,...,SHAPE,MILLISECONDS
            primitives.append(Primitive(fields[5], fields[6], fields[7], fields[-2], float(fields[-1])))
    return primitives


def convolution_flops(shape: str) -> float:
    """2 FLOPs a multiply-add of a 2-D convolution from its descriptor; each direction computes as many."""
    match = SHAPE.search(shape)
    if not match:
        raise ValueError(f"not a 2-D convolution descriptor: {shape}")
    batch, groups, channels_in, channels_out, height, kernel_height, width, kernel_width = (
        int(value) if value else 1 for value in match.groups())
    return 2.0 * batch * height * width * channels_out * channels_in * kernel_height * kernel_width / groups


def child(model_name: str, precision: str, batch_size: int, steps: int, inter_op: int) -> None:
    """Train ``steps`` steps (after two to build and warm up) between the two marks, oneDNN logging."""
    import keras
    import numpy as np
    import tensorflow as tf

    from imgclf.modeling.models import build_model

    if inter_op:
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    keras.mixed_precision.set_global_policy("float32" if precision == "off" else f"mixed_{precision}")
    model = build_model(model_name, (32, 32, 3), 10)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.85, nesterov=True),
                  loss="sparse_categorical_crossentropy")
    generator = np.random.default_rng(0)
    batch = (tf.constant(generator.integers(0, 256, (batch_size, 32, 32, 3), dtype=np.uint8)),
             tf.constant(generator.integers(0, 10, batch_size, dtype=np.int32)))
    repeated = tf.data.Dataset.from_tensors(batch).repeat()
    model.fit(repeated, steps_per_epoch=2, epochs=1, verbose=0)
    print(START, flush=True)
    start = time.perf_counter()
    model.fit(repeated, steps_per_epoch=steps, epochs=1, verbose=0)
    print(f"{END}: {time.perf_counter() - start:.3f} s", flush=True)


def main() -> int:
    targets = Targets()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="airbench95", help="train.model")
    parser.add_argument("--precision", default="bfloat16", help="train.mixed_precision: off or bfloat16")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=3, help="training steps logged")
    parser.add_argument("--inter-op", type=int, default=1, help="TensorFlow's inter-op threads; 0: its default")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.model, args.precision, args.batch_size, args.steps, args.inter_op)
        return targets.exit_status()

    # imported here, not above: they load Keras, which the child loads with its own settings; the
    # train stage's TensorFlow (oneDNN's kernels on every x86 CPU) here and in the child
    from imgclf.modeling.backend import use_backend

    use_backend("tensorflow")
    from machine_limit import matmul_rate  # benchmarks/machine_limit.py, beside this script

    from imgclf.modeling.devices import describe_cpu

    print(f"CPU: {describe_cpu()}")
    dtype = "bfloat16" if args.precision == "bfloat16" else "float32"
    multiply = matmul_rate(dtype)
    print(f"matrix multiply 2048x2048 {dtype}: {multiply:.0f} GFLOP/s")
    completed = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--child"], capture_output=True,
                               text=True, env={**os.environ, "ONEDNN_VERBOSE": "1"}, check=True)
    lines = completed.stdout.splitlines()
    primitives = parse_log(lines)
    if not primitives:
        print("oneDNN logged nothing: TensorFlow runs without it here (TF_ENABLE_ONEDNN_OPTS=0?)")
        return targets.exit_status()
    seconds = float(next(line for line in lines if line.startswith(END)).split(": ")[-1].removesuffix(" s"))
    total = sum(primitive.milliseconds for primitive in primitives)
    print(f"{args.model}, {args.steps} training steps of batch {args.batch_size}, {args.precision}, inter-op "
          f"threads {args.inter_op or 'default'}: {args.steps * args.batch_size / seconds:.1f} images/s with the "
          f"log on; oneDNN's primitives {total / 1000:.2f} s of the steps' {seconds:.2f} s (the rest: TensorFlow's "
          f"own kernels, such as the batch norms, activations and optimizer)")

    by_kind: dict[tuple[str, str, str], float] = defaultdict(float)
    for primitive in primitives:
        by_kind[primitive.kind, primitive.direction, primitive.implementation] += primitive.milliseconds
    print("| primitive | direction | implementation | share of oneDNN's time |")
    print("| --- | --- | --- | --- |")
    for (kind, direction, implementation), milliseconds in sorted(by_kind.items(), key=lambda item: -item[1]):
        print(f"| {kind} | {direction} | {implementation} | {milliseconds / total:.1%} |")

    calls: dict[tuple[str, str], list[float]] = defaultdict(list)
    for primitive in primitives:
        if primitive.kind == "convolution":
            calls[primitive.direction, primitive.shape].append(primitive.milliseconds)
    print("| direction | convolution | calls | ms a call | TFLOP/s | share of the multiply |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (direction, shape), times in sorted(calls.items(), key=lambda item: -sum(item[1])):
        per_call = sum(times) / len(times)
        tflops = convolution_flops(shape) / per_call / 1e9
        print(f"| {direction} | {shape} | {len(times)} | {per_call:.1f} | {tflops:.2f} | "
              f"{tflops * 1000 / multiply:.2f} |")
    return targets.exit_status()


if __name__ == "__main__":
    sys.exit(main())

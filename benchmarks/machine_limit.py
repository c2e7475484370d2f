"""How close training comes to the machine's limit: the train stage's FLOP/s over the matrix-multiply rate.

    .venv/bin/python benchmarks/machine_limit.py                       # about 8 minutes on 2 cores
    .venv/bin/python benchmarks/machine_limit.py --model fast_cnn --precisions off
    .venv/bin/python benchmarks/machine_limit.py --recipe airbench95 --baseline <commit> --repeats 2
    .venv/bin/python benchmarks/machine_limit.py --precisions bfloat16 --set train.optimizer=sgd \
        --baseline <commit from before Muon> --repeats 2                   # a param over the recipe's

In the same run, alternating so that a slower moment of the machine meets both:

1. the matrix-multiply rate TensorFlow reaches here, 2048x2048 float32 and bfloat16 (the best of a
   few seconds of repeats each, before and after the training), with the kernels the train stage
   uses (:func:`imgclf.modeling.backend.use_backend`: oneDNN's on every x86 CPU);
2. ``dvc repro train`` on the first ``--per-class`` real CIFAR-10 training images of each class,
   with the ``airbench`` recipe (or ``--recipe``) and ``--model``, once per ``train.mixed_precision``
   of ``--precisions``: its images per second (``logs/train_timing.json``, the median of epochs 2 on);
3. with ``--split`` (after each training) or ``--split-only`` (instead of them): the same network's
   training steps on one batch held in memory, as the stage builds it and cut down, without its
   augmentation, its activations, its batch norms (:func:`step_rates`): what each part costs of a step.
4. with ``--baseline COMMIT``: the same ``dvc repro train`` from a git worktree of that commit after
   each of ours, ``--repeats`` times each (the medians compared): how much a change of the train
   stage's code moved its rate. A param that the baseline's params.yaml does not have (one added
   since) is left out of its runs, and named: with ``--set`` giving a setting both know (for
   example ``train.optimizer=sgd`` against a commit from before Muon), both train the same way.

The training's FLOP/s are its images per second times the model's FLOPs per training image (three
times the forward pass's multiply-adds of its convolutions and dense layers, counted from the model
as built: the backward pass computes two products for each of the forward's), printed as a share of
the matrix-multiply rate of the same precision and of the fastest one. Target (issue 31): at least
0.8 of the bfloat16 rate, on a CPU with bf16 units.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the project copy is made as the end-to-end tests make theirs

from imgclf.modeling.backend import ONEDNN_VARIABLE, use_backend  # noqa: E402

PERSON_ONEDNN = os.environ.get(ONEDNN_VARIABLE)  # as the person set it: the stages' runs get it so
use_backend("tensorflow")  # before anything loads TensorFlow here: the multiplies with the stage's kernels

from dvc_overhead import run, worktree  # noqa: E402  (the same command runner and worktree as there)
from targets import Targets  # noqa: E402  (benchmarks/targets.py, beside this script)

from imgclf.recipes import load_recipe  # noqa: E402
from tests.helpers import extract_cifar10_subset, make_project, parse_settings, set_params  # noqa: E402

TARGET_SHARE = 0.8
MATMUL_SIZE = 2048


def matmul_rate(dtype: str, seconds: float = 3.0) -> float:
    """GFLOP/s of TensorFlow's MATMUL_SIZE square matrix product in ``dtype``: the best repeat."""
    import tensorflow as tf

    a = tf.random.normal((MATMUL_SIZE, MATMUL_SIZE), dtype=tf.float32)
    a = tf.cast(a, dtype)
    b = tf.cast(tf.random.normal((MATMUL_SIZE, MATMUL_SIZE), dtype=tf.float32), dtype)
    tf.matmul(a, b).numpy()  # the first call sets up the kernel
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        tf.matmul(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * MATMUL_SIZE ** 3 / best / 1e9


def forward_flops(model_name: str, size: int, classes: int) -> int:
    """FLOPs (2 per multiply-add) of one image's forward pass through ``model_name``'s convolutions
    and dense layers, as :func:`imgclf.modeling.models.build_model` builds it."""
    import keras

    from imgclf.modeling.models import build_model

    model = build_model(model_name, (size, size, 3), classes)
    total = 0

    def count(layers: list) -> None:
        nonlocal total
        for layer in layers:
            if isinstance(layer, keras.Model):
                count(layer.layers)
            elif isinstance(layer, keras.layers.Conv2D):
                height, width, channels_in, channels_out = layer.kernel.shape
                _, out_height, out_width, _ = layer.output.shape
                total += 2 * out_height * out_width * height * width * channels_in * channels_out
            elif isinstance(layer, keras.layers.Dense):
                total += 2 * layer.kernel.shape[0] * layer.kernel.shape[1]

    count(model.layers)
    return total


SPLIT_IMAGES = 8192  # random images per epoch of the step split (8 batches of 1,024)


def step_rates(params: dict, precision: str, epochs: int = 4) -> dict[str, float]:
    """Images per second of ``params``' network training in ``precision``, whole and cut down.

    ``model.fit`` steps on one batch of random images held in TensorFlow, over and over: no input
    path at all (fitting on NumPy arrays, Keras' own input path capped some cuts at about 400
    images/s here). The rate is the median of epochs 2 on, each timed inside ``fit``. The cuts: the
    network as the stage builds it (with its augmentation), its whitening layer frozen as
    ``train.whiten`` leaves it (so no gradient goes back through the first block's convolution), and
    training, as with ``train.whiten_bias_epochs``; then, every layer training: without the
    augmentation; that with GELU's tanh approximation; without the activations; without the batch
    norms too (convolutions, poolings and classifier alone). Every cut does the same convolutions and
    classifier forward, so the FLOPs per image are counted the same.
    """
    import keras
    import numpy as np
    import tensorflow as tf

    from imgclf.modeling.models import build_model
    from imgclf.modeling.networks import WHITENING_LAYER
    from imgclf.modeling.params import AugmentParams

    keras.mixed_precision.set_global_policy("float32" if precision == "off" else f"mixed_{precision}")
    size = int(params.get("resize.size", [32, 32])[0])
    augment = AugmentParams(**{key.removeprefix("train.augment."): value for key, value in params.items()
                               if key.startswith("train.augment.")})
    batch_size = params["train.batch_size"]
    generator = np.random.default_rng(0)
    batch = (tf.constant(generator.integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8)),
             tf.constant(generator.integers(0, 10, batch_size, dtype=np.int32)))
    steps = SPLIT_IMAGES // batch_size
    repeated = tf.data.Dataset.from_tensors(batch).repeat()

    class Skipped(keras.layers.Layer):
        """A removed layer: its input passes unchanged (whatever the graph's call passes beside it)."""

        def call(self, inputs: Any, training: Any = None, mask: Any = None) -> Any:
            return inputs

    def without(kinds: tuple[type, ...]) -> Any:
        """A clone function that skips the layers of ``kinds`` and copies the others' configuration."""
        def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
            return Skipped() if isinstance(layer, kinds) else layer.__class__.from_config(layer.get_config())
        return clone

    def tanh_gelu(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, keras.layers.Activation) and layer.get_config()["activation"] == "gelu":
            return keras.layers.Activation(lambda x: keras.activations.gelu(x, approximate=True))
        return layer.__class__.from_config(layer.get_config())

    cuts = {}
    if params.get("train.whiten"):  # as the stage trains it: train.whiten freezes that layer
        frozen = build_model(params["train.model"], (size, size, 3), 10, augment=augment, seed=0)
        frozen.get_layer(WHITENING_LAYER).trainable = False
        cuts["the stage's network, its whitening layer frozen (train.whiten)"] = frozen
    # every later cut trains every layer: the whitening layer as train.whiten_bias_epochs leaves it
    cuts["the stage's network"] = build_model(params["train.model"], (size, size, 3), 10, augment=augment, seed=0)
    cuts["without augmentation"] = build_model(params["train.model"], (size, size, 3), 10)
    plain = cuts["without augmentation"]
    cuts["GELU's tanh approximation instead of its erf"] = keras.models.clone_model(plain, clone_function=tanh_gelu)
    cuts["without the activations"] = keras.models.clone_model(
        plain, clone_function=without((keras.layers.Activation,)))
    cuts["convolutions, poolings, classifier"] = keras.models.clone_model(
        plain, clone_function=without((keras.layers.BatchNormalization, keras.layers.Activation)))

    class EpochSeconds(keras.callbacks.Callback):
        """Each epoch from its first step to its end, inside ``fit``: not the release of Keras' input
        pipeline after it, which can take as long as the steps (benchmarks/README.md, "epoch_time.py")."""

        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.seconds.append(time.perf_counter() - self.start)

    rates = {}
    for name, model in cuts.items():
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.85, nesterov=True, weight_decay=5e-4),
                      loss="sparse_categorical_crossentropy")
        timer = EpochSeconds()
        model.fit(repeated, steps_per_epoch=steps, epochs=epochs, verbose=0, shuffle=False, callbacks=[timer])
        rates[name] = steps * batch_size / statistics.median(timer.seconds[1:])
    keras.mixed_precision.set_global_policy("float32")
    return rates


def set_environment_variable(name: str, value: str | None) -> None:
    """Set ``name`` to ``value`` in this process's environment; ``None`` unsets it."""
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


@contextlib.contextmanager
def environment_variable(name: str, value: str | None) -> Iterator[None]:
    """``name`` set to ``value`` (``None``: unset) while the block runs, as it was afterwards."""
    before = os.environ.get(name)
    set_environment_variable(name, value)
    try:
        yield
    finally:
        set_environment_variable(name, before)


def known_params(params: dict, checkout: Path) -> tuple[dict, list[str]]:
    """``params`` without the dotted keys that ``checkout``'s params.yaml does not have, and those keys."""
    document = YAML(typ="safe").load((checkout / "params.yaml").read_text())

    def known(dotted: str) -> bool:
        section = document
        for part in dotted.split("."):
            if not isinstance(section, dict) or part not in section:
                return False
            section = section[part]
        return True

    return ({key: value for key, value in params.items() if known(key)},
            [key for key in params if not known(key)])


def train_rate(project: Path, images: Path, params: dict, precision: str, checkout: Path = ROOT,
               onednn: str | None = None) -> dict:
    """``dvc repro train`` in a new ``project`` of ``checkout``'s pipeline with ``params`` and
    ``train.mixed_precision: precision``: metrics/train.json with logs/train_timing.json (its
    ``train_images_per_second``, the median of epochs 2 on). The stage runs with ``TF_ENABLE_ONEDNN_OPTS``
    as the person set it (``onednn``), not as this process set it for its own TensorFlow: each
    checkout's stage chooses its kernels itself."""
    make_project(project, checkout, heatmaps=False)
    set_params(project, **{"data.source": "folder", "data.path": str(images), **params,
                           "train.mixed_precision": precision})
    with environment_variable(ONEDNN_VARIABLE, onednn):
        wall, _ = run(["dvc", "repro", "train"], project)
    return {**json.loads((project / "metrics" / "train.json").read_text()),
            **json.loads((project / "logs" / "train_timing.json").read_text()), "wall": wall}


def main() -> int:
    targets = Targets()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="airbench", help="the recipe whose params train (recipes/)")
    parser.add_argument("--model", default=None, help="train.model instead of the recipe's")
    parser.add_argument("--per-class", type=int, default=400, help="CIFAR-10 training images per class")
    parser.add_argument("--epochs", type=int, default=4, help="train.epochs (the first is left out of the rate)")
    parser.add_argument("--precisions", nargs="+", default=["off", "bfloat16"], help="train.mixed_precision values")
    parser.add_argument("--split", action="store_true",
                        help="also time the network's training steps on one batch in memory, whole and cut down")
    parser.add_argument("--split-only", action="store_true", help="--split without the train stage's runs")
    parser.add_argument("--baseline", help="a commit whose train stage runs after each of ours, for the ratio")
    parser.add_argument("--repeats", type=int, default=1, help="train stage runs per precision (and side)")
    parser.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                        help="params over the recipe's, as YAML values (e.g. train.optimizer=sgd)")
    args = parser.parse_args()
    params = {**load_recipe(args.recipe, ROOT / "recipes").settings, "train.epochs": args.epochs,
              "train.warmup_epochs": 1.0, "split.val": 0.1, **parse_settings(args.set)}
    if args.model:
        params["train.model"] = args.model
    model_name = params["train.model"]
    size = int(params.get("resize.size", [32, 32])[0])
    flops = 3 * forward_flops(model_name, size, 10)
    from imgclf.modeling.devices import describe_cpu  # imports Keras: not at the top, so that --help is quick

    print(f"CPU: {describe_cpu()}")
    print(f"{model_name} at {size}x{size}: {flops / 1e9:.3f} GFLOPs per training image "
          f"({flops / 3e6:.0f} MFLOPs forward, times 3)")

    rates: dict[str, list[float]] = {"float32": [], "bfloat16": []}
    trained: dict[str, list[dict]] = {}
    baseline: dict[str, list[dict]] = {}
    split: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="machine-limit-") as scratch_name, contextlib.ExitStack() as stack:
        scratch = Path(scratch_name)
        images = extract_cifar10_subset(scratch / "cifar", args.per_class, 20)
        baseline_checkout = (stack.enter_context(worktree(args.baseline, scratch / "baseline"))
                             if args.baseline else None)
        baseline_params, left_out = known_params(params, baseline_checkout) if baseline_checkout else ({}, [])
        if left_out:
            print(f"left out of {args.baseline}'s runs (its params.yaml has no such key): {', '.join(left_out)}")
        for repeat in range(args.repeats):
            for precision in args.precisions:
                for dtype in rates:
                    rates[dtype].append(matmul_rate(dtype))
                if not args.split_only:
                    trained.setdefault(precision, []).append(train_rate(
                        scratch / f"ours-{precision}-{repeat}", images, params, precision, onednn=PERSON_ONEDNN))
                if baseline_checkout:
                    baseline.setdefault(precision, []).append(train_rate(
                        scratch / f"baseline-{precision}-{repeat}", images, baseline_params, precision,
                        baseline_checkout, onednn=PERSON_ONEDNN))
                if (args.split or args.split_only) and repeat == 0:
                    split[precision] = step_rates(params, precision)
        for dtype in rates:
            rates[dtype].append(matmul_rate(dtype))

    best = {dtype: max(values) for dtype, values in rates.items()}
    for dtype, values in rates.items():
        print(f"matrix multiply {MATMUL_SIZE}x{MATMUL_SIZE} {dtype}: best {best[dtype]:.0f} GFLOP/s "
              f"(each measurement: {', '.join(f'{value:.0f}' for value in values)})")
    fastest = max(best.values())
    if trained:
        print("| train.mixed_precision | images/s | training GFLOP/s | share of its precision's multiply | "
              "share of the fastest |")
        print("| --- | --- | --- | --- | --- |")
    shares = []
    for precision, records in trained.items():
        speed = statistics.median(record["train_images_per_second"] for record in records)
        achieved = speed * flops / 1e9
        own = best["bfloat16" if precision == "bfloat16" else "float32"]
        shares.append(achieved / fastest)
        print(f"| {precision} | {speed:.0f} | {achieved:.0f} | {achieved / own:.2f} | {achieved / fastest:.2f} |")
    if baseline:
        print(f"The train stage against {args.baseline}'s, taking turns "
              "(images/s of each run; the ratio of the medians):")
        print("| train.mixed_precision | ours | baseline | ratio |")
        print("| --- | --- | --- | --- |")
        for precision, records in baseline.items():
            ours = [record["train_images_per_second"] for record in trained[precision]]
            theirs = [record["train_images_per_second"] for record in records]
            print(f"| {precision} | {', '.join(f'{speed:.0f}' for speed in ours)} | "
                  f"{', '.join(f'{speed:.0f}' for speed in theirs)} | "
                  f"{statistics.median(ours) / statistics.median(theirs):.2f}x |")
    if split:
        print("Training steps on one batch of random images held in TensorFlow (model.fit, median of epochs 2 on):")
        print("| train.mixed_precision | cut of the network | images/s | GFLOP/s | share of its precision's multiply |")
        print("| --- | --- | --- | --- | --- |")
        for precision, cut_rates in split.items():
            own = best["bfloat16" if precision == "bfloat16" else "float32"]
            for name, speed in cut_rates.items():
                print(f"| {precision} | {name} | {speed:.0f} | {speed * flops / 1e9:.0f} | "
                      f"{speed * flops / 1e9 / own:.2f} |")
    if shares:
        print(f"target: at least {TARGET_SHARE} of the fastest multiply rate: "
              f"{targets.check('share of the machine limit', max(shares) >= TARGET_SHARE)}")
    print(f"median matmul float32 {statistics.median(rates['float32']):.0f} GFLOP/s")
    return targets.exit_status()


if __name__ == "__main__":
    sys.exit(main())

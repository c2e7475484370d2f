"""The GELU's compiled training loops against Keras' chain of operations, in one process, taking turns.

    .venv/bin/python benchmarks/gelu_loops.py            # about 2-3 minutes on 2 cores
    .venv/bin/python benchmarks/gelu_loops.py --network airbench --precisions bfloat16

On TensorFlow on a CPU, :class:`imgclf.modeling.gelu.GELU` trains through two functions that XLA
compiles into one loop each, where Keras' ``gelu`` is a chain of generic operations
(the module's docstring). Printed, for each precision:

1. one activation of ``--batch`` images of 15x15x128 (the size of airbench95's first block), its
   forward and backward pass: the median time of each way;
2. whole training steps (``train_on_batch``) of ``--network`` on random images, built twice with
   the same seed: once as the networks are, and once with every GELU layer held to Keras' ``gelu``.
   The two models step in turn, ``--rounds`` times each, so that a change in the machine's speed
   falls on both. Printed: images per second of each (medians) and their ratio;
3. the same two builds' inference (``predict_on_batch``, as a run's validation calls the model),
   taking turns the same way. In bfloat16 the layer's inference takes the forward loop too; in
   float32 both builds run Keras' chain, so their ratio is the measurement's own spread.

**Target: the network's steps with the compiled loops at least as fast as with Keras' chain (a
ratio of at least 1.0) in every precision, and its inference in bfloat16.**
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from targets import Targets  # noqa: E402  (benchmarks/targets.py, beside this script)

from imgclf.modeling.backend import import_keras, use_backend  # noqa: E402

log = logging.getLogger("gelu_loops")


def median_seconds(step: Any, repeats: int) -> float:
    """The median wall time of ``step()`` after two untimed calls (tracing, compiling)."""
    step()
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def activation_seconds(dtype: str, batch: int, repeats: int) -> dict[str, float]:
    """Forward and backward pass of one 15x15x128 activation: Keras' chain, and the compiled loops."""
    import keras
    import numpy as np
    import tensorflow as tf

    from imgclf.modeling.gelu import GELU

    values = np.random.default_rng(0).normal(size=(batch, 15, 15, 128)).astype("float32")
    inputs = tf.Variable(tf.cast(values, dtype))
    ways = {"keras": lambda x: keras.activations.gelu(x, approximate=False),
            "compiled": lambda x: GELU(dtype=dtype)(x, training=True)}
    seconds = {}
    for name, function in ways.items():
        @tf.function
        def step(function: Any = function) -> tf.Tensor:
            with tf.GradientTape() as tape:
                outputs = function(inputs)
            return tape.gradient(outputs, inputs, output_gradients=tf.ones_like(outputs))

        seconds[name] = median_seconds(lambda step=step: step().numpy(), repeats)
    return seconds


def step_rates(network: str, size: int, precision: str, batch: int,
               rounds: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Images per second of each training step and of each inference of the two builds of
    ``network``, taking turns."""
    import keras
    import numpy as np

    import imgclf.modeling.gelu
    from imgclf.modeling.models import build_model

    class KerasChainGELU(imgclf.modeling.gelu.GELU):
        """The layer held to Keras' gelu in training too: this benchmark's baseline."""

        def _compiles(self, inputs: Any, training: Any) -> bool:
            return False

    keras.mixed_precision.set_global_policy("mixed_bfloat16" if precision == "bfloat16" else "float32")
    generator = np.random.default_rng(0)
    images = generator.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    labels = keras.utils.to_categorical(generator.integers(0, 10, batch), 10)
    models = {}
    for side in ("compiled", "keras"):
        compiled_layer = imgclf.modeling.gelu.GELU
        if side == "keras":  # the builders import the layer from its module when they run
            imgclf.modeling.gelu.GELU = KerasChainGELU  # type: ignore[misc]
        try:
            model = build_model(network, (size, size, 3), 10, seed=0)
        finally:
            imgclf.modeling.gelu.GELU = compiled_layer  # type: ignore[misc]
        if not any(isinstance(layer, compiled_layer) for layer in model._flatten_layers()):
            sys.exit(f"--network {network} has no GELU layer (fast_cnn has ReLUs since 2026-12-06): nothing to "
                     "compare; choose airbench or airbench95")
        assert any(isinstance(layer, KerasChainGELU) for layer in model._flatten_layers()) == (side == "keras")
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="categorical_crossentropy")
        for _ in range(2):  # tracing, and XLA's compilation for this batch
            model.train_on_batch(images, labels)
            model.predict_on_batch(images)
        models[side] = model
    rates: dict[str, list[float]] = {side: [] for side in models}
    inference: dict[str, list[float]] = {side: [] for side in models}
    for _ in range(rounds):
        for side, model in models.items():
            start = time.perf_counter()
            model.train_on_batch(images, labels)
            rates[side].append(batch / (time.perf_counter() - start))
            start = time.perf_counter()
            model.predict_on_batch(images)
            inference[side].append(batch / (time.perf_counter() - start))
    keras.mixed_precision.set_global_policy("float32")
    return rates, inference


def ratio_line(rates: dict[str, list[float]]) -> str:
    """The medians of the two builds, their ratio, and the range of each round's ratio."""
    compiled, chain = statistics.median(rates["compiled"]), statistics.median(rates["keras"])
    each = [c / k for c, k in zip(rates["compiled"], rates["keras"], strict=True)]
    return (f"compiled loops {compiled:.0f} images/s, Keras' chain {chain:.0f} images/s, {compiled / chain:.2f}x "
            f"(each round's ratio {min(each):.2f}-{max(each):.2f})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", default="airbench95", help="train.model whose steps are timed")
    parser.add_argument("--size", type=int, default=32, help="image height and width")
    parser.add_argument("--batch", type=int, default=512, help="images a step")
    parser.add_argument("--precisions", nargs="+", default=["bfloat16", "off"], help="train.mixed_precision values")
    parser.add_argument("--rounds", type=int, default=12, help="timed steps of each build")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    use_backend("tensorflow")  # the train stage's TensorFlow: oneDNN's kernels on every x86 CPU
    import_keras()
    from imgclf.modeling.devices import describe_cpu

    targets = Targets()
    log.info("CPU: %s", describe_cpu())
    for precision in args.precisions:
        dtype = "bfloat16" if precision == "bfloat16" else "float32"
        seconds = activation_seconds(dtype, args.batch, repeats=10)
        log.info("%s: one %dx15x15x128 activation, forward and backward: Keras' chain %.1f ms, compiled loops "
                 "%.1f ms (%.2fx)", precision, args.batch, 1e3 * seconds["keras"], 1e3 * seconds["compiled"],
                 seconds["keras"] / seconds["compiled"])
        rates, inference = step_rates(args.network, args.size, precision, args.batch, args.rounds)
        ratio = statistics.median(rates["compiled"]) / statistics.median(rates["keras"])
        log.info("%s: %s steps at %dx%d, batch %d: %s; target >= 1.0x: %s", precision, args.network, args.size,
                 args.size, args.batch, ratio_line(rates),
                 targets.check(f"{precision}: at least as fast", ratio >= 1.0))
        ratio = statistics.median(inference["compiled"]) / statistics.median(inference["keras"])
        if precision == "off":
            log.info("%s: its inference, both through Keras' chain: %s", precision, ratio_line(inference))
        else:
            log.info("%s: its inference: %s; target >= 1.0x: %s", precision, ratio_line(inference),
                     targets.check(f"{precision}: inference at least as fast", ratio >= 1.0))
    return targets.exit_status()


if __name__ == "__main__":
    sys.exit(main())

"""Feeding the model: the train stage's input path against the seeds' ImageDataGenerator, and
the train stage's fit against a plain fit on arrays already in memory.

    .venv/bin/pip install -r benchmarks/requirements.txt   # tf-keras, for the baseline only
    .venv/bin/python benchmarks/loader.py                  # about 5 minutes on 2 cores

Images: real CIFAR-10 JPEGs from ../shared/datasets (the first ``--per-class`` training images of
each class), brought to the training size by the resize stage's own code and packed as the stage packs
them; the seeds' side reads the same images as PNG class folders.

1. Loader, 64x64, with the seeds' augmentation (rotation 10 degrees, width and height shifts 0.2,
   horizontal flips), ``--epochs`` epochs each side:
   - the seeds' way: ``tf_keras`` ``ImageDataGenerator(...).flow_from_directory(...)``, every batch
     drawn (it reads and decodes the files again every epoch and augments image by image);
   - ours: the train stage's path: :func:`imgclf.data.dataset.open_split`, then
     :func:`imgclf.training.loop.train` of a model whose only work is the stage's augmentation layers
     (a pooling and a dense layer after them, so there is something to train).
   Both report their median epoch; ours leaves out its first (tracing and compiling), and also
   prints its rate over the whole run, loading the images included.
2. Fit, 32x32, ``simple_cnn`` and ``cifar_cnn``: training images per second of the stage's
   :func:`imgclf.training.loop.train` (with its best-weights and DVCLive callbacks) against ``model.fit`` on
   the same arrays with no callbacks; the first epoch (tracing and compiling) is left out of both.

The last line is the loader ratio; the fit ratios are printed just above it.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from imgclf.modeling.backend import use_backend  # noqa: E402

use_backend("tensorflow")  # the train stage's TensorFlow: oneDNN's kernels on every x86 CPU

import keras  # noqa: E402
import numpy as np  # noqa: E402
from dvclive import Live  # noqa: E402
from targets import Targets  # noqa: E402  (benchmarks/targets.py, beside this script)

from imgclf.data.dataset import ImageSet, load_image_set, open_split, save_image_set, write_image_folder  # noqa: E402
from imgclf.data.images import ResizeJob, resize_files  # noqa: E402
from imgclf.modeling.models import augmentation, build_model  # noqa: E402
from imgclf.modeling.params import AugmentParams, ModelName, TrainParams  # noqa: E402
from imgclf.training.loop import compile_model, make_deterministic, train  # noqa: E402
from imgclf.training.sinks import LiveSink  # noqa: E402

ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cifar10-jpg.tar.gz"
SEEDS_AUGMENTATION = AugmentParams(horizontal_flip=True, rotation=10, width_shift=0.2, height_shift=0.2)
LOADER_TARGET = 5.0
FIT_TARGET = 0.9
BATCH_SIZE = 32


class EpochTimes(keras.callbacks.Callback):
    """Wall time of every epoch's training steps, validation excluded.

    Epoch-level hooks only: a callback with batch hooks makes Keras wait for every step's results
    (no asynchronous dispatch), which would slow down what it measures.
    """

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self._start = self._training_end = 0.0

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self._start = time.perf_counter()
        self._training_end = 0.0

    def on_test_begin(self, logs=None) -> None:  # validation starts: the epoch's training is over
        self._training_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None) -> None:
        self.seconds.append((self._training_end or time.perf_counter()) - self._start)


def prepare_images(scratch: Path, per_class: int, side: int) -> Path:
    """The first ``per_class`` CIFAR-10 training images per class, resized by the resize stage's code.

    Returns the packed split the train stage reads; beside it, the same images as class folders of
    PNGs (``resized<side>/``) for the seeds' ``flow_from_directory``.
    """
    if not ARCHIVE.exists():
        sys.exit(f"{ARCHIVE} is missing: this benchmark needs the real CIFAR-10 images in ../shared/datasets.")
    raw = scratch / "raw"
    with tarfile.open(ARCHIVE) as tar:
        members = [member for member in tar if member.isfile() and member.name.startswith("cifar10/train/")
                   and int(Path(member.name).stem) < per_class]
        tar.extractall(raw, members=members, filter="data")
    sources = sorted((raw / "cifar10" / "train").glob("*/*.jpg"))
    images, _ = resize_files([ResizeJob(path) for path in sources], (side, side), "stretch", max_pixels=200e6)
    class_names = tuple(sorted({path.parent.name for path in sources}))
    labels = np.asarray([class_names.index(path.parent.name) for path in sources], dtype=np.int32)
    packed = scratch / f"resized{side}-split"
    save_image_set(packed, ImageSet(images, labels, tuple(f"{path.parent.name}/{path.name}" for path in sources),
                                    class_names))
    write_image_folder(load_image_set(packed), scratch / f"resized{side}")  # for flow_from_directory
    return packed


def seeds_loader(folder: Path, epochs: int) -> float:
    """Images per second that ImageDataGenerator.flow_from_directory delivers: the median epoch."""
    from tf_keras.preprocessing.image import ImageDataGenerator

    generator = ImageDataGenerator(rescale=1 / 255, rotation_range=10, width_shift_range=0.2,
                                   height_shift_range=0.2, horizontal_flip=True)
    batches = generator.flow_from_directory(str(folder), target_size=(64, 64), batch_size=BATCH_SIZE,
                                            class_mode="sparse", seed=0)
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        for _ in range(len(batches)):
            next(batches)
        seconds.append(time.perf_counter() - start)
    return batches.samples / statistics.median(seconds)


def our_loader(packed: Path, epochs: int) -> tuple[float, float]:
    """Images per second through the train stage's path: (the median epoch after the first, the whole run
    with loading, compiling and validation included)."""
    start = time.perf_counter()
    train_set = open_split(packed)
    inputs = keras.Input(train_set.image_shape)
    features = keras.Sequential(augmentation(SEEDS_AUGMENTATION, seed=0), name="augmentation")(inputs)
    features = keras.layers.Rescaling(1 / 255)(features)
    features = keras.layers.GlobalAveragePooling2D()(features)
    model = keras.Model(inputs, keras.layers.Dense(len(train_set.class_names), activation="softmax")(features))
    params = TrainParams(epochs=epochs, batch_size=BATCH_SIZE)
    val_set = open_split(packed, train_set.class_names)  # the stage validates every epoch too
    timer = EpochTimes()
    train(lambda: model, train_set, val_set, params, callbacks=[timer])
    whole_run = epochs * len(train_set) / (time.perf_counter() - start)
    return len(train_set) / statistics.median(timer.seconds[1:]), whole_run


def training_rates(name: ModelName, packed: Path, epochs: int, history: Path) -> tuple[float, float]:
    """Training images per second after the first epoch: (the stage's fit, a plain fit)."""
    train_set = load_image_set(packed)
    params = TrainParams(model=name, epochs=epochs, batch_size=BATCH_SIZE)
    rates = []
    for stage_way in (True, False):
        make_deterministic(0)
        model = build_model(name, train_set.image_shape, len(train_set.class_names), seed=0)
        timer = EpochTimes()
        if stage_way:
            with Live(dir=str(history), dvcyaml=None, save_dvc_exp=False, report=None) as live:
                train(lambda: model, train_set, train_set, params, sinks=[LiveSink(live)], callbacks=[timer])  # noqa: B023
        else:
            compile_model(model, params)
            model.fit(train_set.images, train_set.labels, validation_data=(train_set.images, train_set.labels),
                      batch_size=BATCH_SIZE, epochs=epochs, shuffle=True, callbacks=[timer], verbose=0)
        rates.append(len(train_set) / statistics.median(timer.seconds[1:]))
    return rates[0], rates[1]


def main() -> int:
    targets = Targets()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=300, help="training images per class (10 classes)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per measurement; the first is left out")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"Keras {keras.__version__} ({keras.backend.backend()})")

    with tempfile.TemporaryDirectory(prefix="loader-bench-") as scratch:
        packed64 = prepare_images(Path(scratch), args.per_class, 64)
        packed32 = prepare_images(Path(scratch), args.per_class, 32)
        folder64 = packed64.with_suffix("")
        count = sum(1 for _ in folder64.glob("*/*.png"))
        print(f"{count} real CIFAR-10 training images, 10 classes, batch size {BATCH_SIZE}, {args.epochs} epochs\n")

        seeds = seeds_loader(folder64, args.epochs)
        ours, ours_whole_run = our_loader(packed64, args.epochs)
        print("loader at 64x64 with rotation 10, shifts 0.2, flips (median epoch):")
        print(f"  seeds' ImageDataGenerator.flow_from_directory                  {seeds:8.0f} images/s")
        print(f"  the train stage's path (arrays in memory, augmentation in the model)  {ours:8.0f} images/s "
              f"({ours_whole_run:.0f} over the whole run, loading, compiling and validation included)")

        fit_ratios = {}
        for name in ("simple_cnn", "cifar_cnn"):
            stage, plain = training_rates(name, packed32, args.epochs, Path(scratch) / f"history-{name}")
            fit_ratios[name] = stage / plain
            print(f"fit {name} at 32x32: the stage's fit {stage:7.0f} images/s, plain fit on arrays {plain:7.0f} "
                  f"images/s: {fit_ratios[name]:.2f}x (target >= {FIT_TARGET:g}x): "
                  f"{targets.check(f'fit {name} >= {FIT_TARGET:g}x', fit_ratios[name] >= FIT_TARGET)}")
    ratio = ours / seeds
    print(f"loader: {ratio:.1f}x the seeds' throughput (target >= {LOADER_TARGET:g}x): "
          f"{targets.check(f'loader >= {LOADER_TARGET:g}x', ratio >= LOADER_TARGET)}")
    print(f"loader throughput ratio (ours / ImageDataGenerator): {ratio:.2f}")
    return targets.exit_status()


if __name__ == "__main__":
    sys.exit(main())

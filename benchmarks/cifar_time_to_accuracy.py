"""Time to accuracy on the 60,000 real CIFAR-10 images: `dvc repro` from the images to the test metrics.

    .venv/bin/python benchmarks/cifar_time_to_accuracy.py                   # about 65 minutes on 2 cores
    .venv/bin/python benchmarks/cifar_time_to_accuracy.py --skip-baseline   # about 35 minutes

In a temporary git + DVC repository holding a copy of the pipeline (as the tests make one), with the
images of ../shared/datasets unpacked as a ``folder`` source (its own test split kept, 4% of the
training images for validation):

1. ``dvc repro`` with :data:`RECIPE`: the wall time from the images to metrics/evaluate.json, the
   train stage's training time, and the test accuracy (target: 85% within 30 minutes of training);
2. the baseline, the seeds' CIFAR net (``cifar_cnn`` with its defaults) trained for the same
   training time: one epoch to measure its speed, then as many epochs as fit.

The last line is the recipe's test accuracy.
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = ROOT.parent / "shared" / "datasets" / "cifar10-jpg.tar.gz"
sys.path.insert(0, str(ROOT))  # the project copy is made as the end-to-end tests make theirs

from dvc_overhead import run, training_seconds  # noqa: E402  (the same timing as the DVC benchmark's)

from tests.helpers import make_project, set_params  # noqa: E402

# fast_cnn with the speedruns' recipe: SGD with Nesterov momentum, one-cycle schedule, label smoothing,
# flips and 2-pixel shifts. The README's "Quality" table quotes it as a `dvc exp run -S` line.
RECIPE = {
    "split.val": 0.04, "resize.size": [32, 32], "train.model": "fast_cnn", "train.epochs": 10,
    "train.batch_size": 256, "train.optimizer": "sgd", "train.learning_rate": 0.2, "train.momentum": 0.9,
    "train.nesterov": True, "train.weight_decay": 5e-4, "train.label_smoothing": 0.2,
    "train.schedule": "one_cycle", "train.warmup_epochs": 2.0, "train.augment.horizontal_flip": True,
    "train.augment.width_shift": 0.0625, "train.augment.height_shift": 0.0625,
    "train.augment.fill_mode": "reflect", "evaluate.tta": "flip",
}
TARGET_ACCURACY = 0.85
TARGET_MINUTES = 30


def results(project: Path) -> tuple[float, dict]:
    evaluate = json.loads((project / "metrics" / "evaluate.json").read_text())
    return evaluate["accuracy"], json.loads((project / "metrics" / "train.json").read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-baseline", action="store_true", help="only the recipe, not cifar_cnn")
    args = parser.parse_args()
    if not ARCHIVE.is_file():
        sys.exit(f"needs the real CIFAR-10 images at {ARCHIVE} (see ../shared/datasets/README.md)")

    with tempfile.TemporaryDirectory(prefix="cifar-time-") as scratch:
        with tarfile.open(ARCHIVE) as archive:
            archive.extractall(scratch, filter="data")
        project = make_project(Path(scratch) / "project")
        set_params(project, **{"data.source": "folder", "data.path": str(Path(scratch) / "cifar10"), **RECIPE})
        run(["git", "commit", "-qam", "CIFAR-10, the recipe"], project)

        wall, log = run(["dvc", "repro"], project)
        training = training_seconds(log)
        accuracy, train = results(project)
        print(f"recipe: dvc repro {wall / 60:.1f} min from the images to the test metrics; training "
              f"{training / 60:.1f} min ({train['epochs']} epochs, {train['train_images_per_second']:.0f} "
              f"images/s); test accuracy {accuracy:.4f}")

        if not args.skip_baseline:
            run(["dvc", "exp", "run", "-n", "cifar-cnn-speed", "-S", "train.model=cifar_cnn", "-S",
                 "train.epochs=1", "-S", "train.schedule=constant", "-S", "train.optimizer=adam", "-S",
                 "train.learning_rate=0.001", "-S", "train.batch_size=32", "-S", "train.label_smoothing=0.0",
                 "-S", "train.weight_decay=0.0"], project)
            rate = results(project)[1]["train_images_per_second"]
            epochs = max(1, int(training * rate / results(project)[1]["train_images"]))
            _, log = run(["dvc", "exp", "run", "-n", "cifar-cnn-same-time", "-S", "train.model=cifar_cnn", "-S",
                          f"train.epochs={epochs}", "-S", "train.schedule=constant", "-S",
                          "train.optimizer=adam", "-S", "train.learning_rate=0.001", "-S", "train.batch_size=32",
                          "-S", "train.label_smoothing=0.0", "-S", "train.weight_decay=0.0"], project)
            baseline, _ = results(project)
            print(f"baseline: cifar_cnn (adam 1e-3, batch 32) for {epochs} epochs in "
                  f"{training_seconds(log) / 60:.1f} min of training: test accuracy {baseline:.4f}")

    met = accuracy >= TARGET_ACCURACY and training <= TARGET_MINUTES * 60
    print(f"target: {TARGET_ACCURACY:.0%} within {TARGET_MINUTES} minutes of training: {'met' if met else 'NOT met'}")
    print(f"recipe test accuracy: {accuracy:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where an epoch's wall time goes: is anything besides the training and validation steps slow?

    .venv/bin/python benchmarks/epoch_time.py      # about 15 minutes on 2 cores; needs ../shared/datasets

For ``simple_cnn``, ``fast_cnn`` and ``resnet20`` (each with its defaults, ``train.epochs: 4``), on
the 2,000 real flower photos at 64x64 (the source's own val split) and on 6,000 real CIFAR-10
images at 32x32 (500 training and 100 test images a class), each run as a user runs it
(``dvc repro train`` in a fresh project): the train stage's ``logs/train_timing.json`` gives every
epoch's wall time (from the start of the epoch to its checkpoint) and the seconds of its training
and of its validation steps. The figure is their ratio, wall / (training + validation steps), the
median over the epochs after the first (which includes building the step functions) and the
largest of them. **Target: at most 1.1.**

The last line is the largest median ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
sys.path.insert(0, str(ROOT))  # the project copy is made as the end-to-end tests make theirs

from dvc_overhead import run  # noqa: E402  (the benchmarks' one way to run a command in a project)
from targets import Targets  # noqa: E402  (benchmarks/targets.py, beside this script)

from tests.helpers import make_project, set_params  # noqa: E402

MODELS = ("simple_cnn", "fast_cnn", "resnet20")
TARGET = 1.1


def flower_photos(scratch: Path) -> Path:
    with tarfile.open(DATASETS / "flowers-photos.tar") as tar:
        tar.extractall(scratch, filter="data")
    return scratch / "flowers"


def cifar_subset(scratch: Path, train_per_class: int = 500, test_per_class: int = 100) -> Path:
    """The first images of each class of the real CIFAR-10 JPEGs, its own train/test layout kept."""
    limits = {"train": train_per_class, "test": test_per_class}
    with tarfile.open(DATASETS / "cifar10-jpg.tar.gz") as tar:
        members = [member for member in tar if member.isfile() and member.name.endswith(".jpg")
                   and int(Path(member.name).stem) < limits[Path(member.name).parts[1]]]
        tar.extractall(scratch, members=members, filter="data")
    return scratch / "cifar10"


def epoch_ratios(project: Path) -> list[dict[str, float]]:
    return json.loads((project / "logs" / "train_timing.json").read_text())["per_epoch"]


def measure(scratch: Path, label: str, images: Path, size: int, models: list[str], targets: Targets,
            epochs: int) -> tuple[list[str], float]:
    project = make_project(scratch / f"project-{size}")
    set_params(project, **{"data.source": "folder", "data.path": str(images), "resize.size": [size, size],
                           "train.epochs": epochs, "train.tensorboard": True})
    lines, worst = [], 0.0
    for model in models:
        set_params(project, **{"train.model": model})
        seconds, _ = run(["dvc", "repro", "train"], project)
        per_epoch = epoch_ratios(project)
        later = [epoch["overhead_ratio"] for epoch in per_epoch[1:]]
        median, largest = statistics.median(later), max(later)
        worst = max(worst, median)
        steps = statistics.median(epoch["train_step_seconds"] for epoch in per_epoch[1:])
        validation = statistics.median(epoch["validation_seconds"] for epoch in per_epoch[1:])
        wall = statistics.median(epoch["seconds"] for epoch in per_epoch[1:])
        lines.append(f"{label}, {model}: epoch {wall:.1f} s for {steps:.1f} s of training steps + {validation:.1f} s "
                     f"of validation; wall / steps median {median:.3f}, largest {largest:.3f} "
                     f"(first epoch {per_epoch[0]['overhead_ratio']:.3f}; dvc repro train {seconds:.0f} s) "
                     f"(target <= {TARGET}): {targets.check(f'{label} {model} <= {TARGET}', median <= TARGET)}")
        print(lines[-1], flush=True)
    return lines, worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    for archive in ("flowers-photos.tar", "cifar10-jpg.tar.gz"):
        if not (DATASETS / archive).exists():
            sys.exit(f"{DATASETS / archive} is missing: this benchmark needs the real images in ../shared/datasets.")
    targets = Targets()
    with tempfile.TemporaryDirectory(prefix="epoch-time-") as scratch_name:
        scratch = Path(scratch_name)
        photo_lines, photo_worst = measure(scratch, "photos 64x64", flower_photos(scratch), 64, args.models, targets,
                                           args.epochs)
        cifar_lines, cifar_worst = measure(scratch, "CIFAR-10 32x32", cifar_subset(scratch), 32, args.models,
                                           targets, args.epochs)
    print("\n".join(photo_lines + cifar_lines))
    print(f"largest median wall / steps ratio: {max(photo_worst, cifar_worst):.3f}")
    return targets.exit_status()


if __name__ == "__main__":
    sys.exit(main())

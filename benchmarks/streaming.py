"""Sharded, streamed hand-offs: memory that does not grow with the number of images, and no loss of speed.

Runs the resize, train and evaluate stage scripts (the commands `dvc repro` runs, without DVC) of
this checkout ("ours") and of a baseline commit ("today": by default the last commit that handed
each split on as one whole ``.npz``, checked out as a git worktree) on the same images, each side in
its own scratch project:

1. Memory: the peak resident memory of each stage at N, 4N and 16N training images (val N/8, test
   N/2: at N the test split already fills the evaluate stage's two image grids) of synthetic
   224x224 photos (JPEGs of 256x256), ``simple_cnn``, one epoch. Peak of the stage's whole process
   tree (the resize stage's workers included), sampled every 20 ms.
   Target: ours at 16N at most 1.15x ours at N, and under 3 GB at every N.
2. Speed: the train stage's training images per second (its own logs/train_timing.json), first
   epoch and the median of the later ones, ours (batches read from the shards, which are first
   dropped from the page cache with posix_fadvise: a cold first epoch) against today's
   (``model.fit`` on the arrays in memory), at 32x32 on real CIFAR-10 images (``simple_cnn`` and
   the CIFAR recipe's ``fast_cnn``) and at 224x224; the best of ``--repeats`` runs per side, the
   sides taking turns. Target: at least 0.95x.

Run from the repository root: ``.venv/bin/python benchmarks/streaming.py`` (about 45 minutes on 2
cores; ``--skip-speed`` or ``--skip-memory`` for part). Prints the ratios last; exits 1 when a
target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil
from ruamel.yaml import YAML

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))  # tests/: the synthetic photos and the memory sampler the CI guard uses

from targets import Targets  # noqa: E402  (benchmarks/targets.py, beside this script)

from tests import helpers  # noqa: E402
from tests.stage_memory import run_measuring_stages  # noqa: E402

BASELINE_COMMIT = "2dbb2f7"  # the last commit with the whole-split .npz hand-off
CIFAR_ARCHIVE = REPOSITORY.parent / "shared" / "datasets" / "cifar10-jpg.tar.gz"
CLASSES = 10
SPEED_RUNS = ("cifar-simple_cnn", "cifar-fast_cnn", "224-simple_cnn")
# The CIFAR-10 recipe of benchmarks/cifar_time_to_accuracy.py, for the 32x32 speed figure.
FAST_CNN = {"train.model": "fast_cnn", "train.batch_size": 256, "train.optimizer": "sgd", "train.learning_rate": 0.2,
            "train.momentum": 0.9, "train.nesterov": True, "train.weight_decay": 5e-4,
            "train.label_smoothing": 0.2, "train.schedule": "one_cycle", "train.warmup_epochs": 1.0,
            "train.augment.horizontal_flip": True, "train.augment.width_shift": 0.0625,
            "train.augment.height_shift": 0.0625, "train.augment.fill_mode": "reflect"}


class Side:
    """One checkout's stage scripts, run in a scratch project of their own."""

    def __init__(self, name: str, checkout: Path, packed_as_npz: bool) -> None:
        self.name = name
        self.checkout = checkout
        self.packed_as_npz = packed_as_npz

    def split_path(self, subset: str) -> str:
        return f"data/resized/{subset}.npz" if self.packed_as_npz else f"data/resized/{subset}"

    def commands(self) -> dict[str, list[list[str]]]:
        """Each stage's commands as this checkout's dvc.yaml runs them (its stages take the arguments of
        their own day; the train stage has two since the ONNX copy), the split folders as .npz files on
        the whole-split hand-off."""
        stages = YAML(typ="safe").load((self.checkout / "dvc.yaml").read_text())["stages"]
        commands: dict[str, list[list[str]]] = {}
        for stage in ("resize", "train", "evaluate"):
            listed = stages[stage]["cmd"]
            commands[stage] = []
            for command in listed if isinstance(listed, list) else [listed]:
                python, script, *arguments = shlex.split(command)
                if self.packed_as_npz:
                    arguments = [re.sub(r"^data/resized/(train|val|test)$", r"data/resized/\1.npz", argument)
                                 for argument in arguments]
                commands[stage].append([sys.executable, str(self.checkout / script), *arguments])
        return commands

    def project(self, root: Path, raw: Path, entries: Sequence[tuple[str, str, str, str]],
                settings: dict[str, Any]) -> Path:
        """A scratch project: this side's params.yaml with ``settings``, ``entries`` as data/split.csv."""
        project = root / self.name
        shutil.rmtree(project, ignore_errors=True)
        (project / "data").mkdir(parents=True)
        (project / "data" / "raw").symlink_to(raw)
        yaml = YAML()
        params = yaml.load((self.checkout / "params.yaml").read_text())
        for key, value in {"train.tensorboard": False, **settings}.items():
            *parents, leaf = key.split(".")
            section = params
            for parent in parents:
                section = section[parent]
            section[leaf] = value
        with open(project / "params.yaml", "w") as handle:
            yaml.dump(params, handle)
        lines = ["file,label,subset,sha256", *(",".join(entry) for entry in entries)]
        (project / "data" / "split.csv").write_text("\n".join(lines) + "\n")
        return project

    def run(self, stage: str, project: Path) -> tuple[float, float]:
        """Run one stage's commands in turn; return (seconds, peak resident MB of its process trees)."""
        env = {**os.environ, "PYTHONPATH": str(self.checkout / "src"), "TF_CPP_MIN_LOG_LEVEL": "2"}
        seconds, peak = 0.0, 0
        for number, command in enumerate(self.commands()[stage]):
            measured = run_measuring_stages(command, project, env, project / f"{stage}-{number}.log", stage)
            if measured.returncode:
                sys.exit(f"{self.name}'s {stage} stage failed:\n" + measured.output[-3000:])
            seconds += measured.seconds
            peak = max(peak, measured.stage_peaks[stage])
        return seconds, peak / 2**20


def drop_from_page_cache(folder: Path) -> None:
    """Evict ``folder``'s files from the page cache (clean pages of files we may read: no root needed)."""
    for path in folder.rglob("*"):
        if path.is_file():
            descriptor = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(descriptor)


def synthetic_photos(raw: Path, count: int) -> list[tuple[str, str]]:
    """``count`` 256x256 synthetic JPEGs in ``raw/<class>/`` (tests.helpers.synthetic_photos); returns
    (path from the project root, class) of each."""
    return [(f"data/raw/{path.relative_to(raw).as_posix()}", path.parent.name)
            for path in helpers.synthetic_photos(raw, count, classes=CLASSES)]


def cifar_images(raw: Path, per_class: int) -> list[tuple[str, str]]:
    """The first ``per_class`` real CIFAR-10 training JPEGs of each class, in ``raw/<class>/``."""
    if not CIFAR_ARCHIVE.exists():
        sys.exit(f"{CIFAR_ARCHIVE} is missing: the 32x32 figure needs the real CIFAR-10 images in ../shared/datasets.")
    with tarfile.open(CIFAR_ARCHIVE) as tar:
        members = [member for member in tar if member.isfile() and member.name.startswith("cifar10/train/")
                   and int(Path(member.name).stem) < per_class]
        for member in members:
            member.name = member.name.removeprefix("cifar10/train/")
        tar.extractall(raw, members=members, filter="data")
    paths = sorted(raw.glob("*/*.jpg"), key=lambda path: (int(path.stem), path.parent.name))  # classes interleaved
    return [(f"data/raw/{path.relative_to(raw).as_posix()}", path.parent.name) for path in paths]


def split_entries(files: Sequence[tuple[str, str]], train: int, raw: Path,
                  counts: dict[str, int] | None = None) -> list[tuple[str, str, str, str]]:
    """The manifest rows of ``train`` training images, train/8 validation and train/2 test images
    (or of ``counts`` images per subset)."""
    import hashlib

    counts = counts or {"train": train, "val": train // 8, "test": train // 2}
    chosen = iter(files)
    rows = []
    for subset, count in counts.items():
        for _ in range(count):
            file, label = next(chosen)
            digest = hashlib.sha256((raw / file.removeprefix("data/raw/")).read_bytes()).hexdigest()
            rows.append((file, label, subset, digest))
    return rows


def epoch_rates(project: Path) -> tuple[float, float]:
    """(first epoch, median of the later epochs) training images per second, from the stage's timing file."""
    timing = json.loads((project / "logs" / "train_timing.json").read_text())
    images = json.loads((project / "metrics" / "train.json").read_text())["train_images"]
    seconds = [epoch["train_step_seconds"] for epoch in timing["per_epoch"]]
    return images / seconds[0], images / statistics.median(seconds[1:])


def memory_figures(sides: Sequence[Side], scratch: Path, n: int, targets: Targets,
                   stages: Sequence[str] = ("resize", "train", "evaluate"),
                   multiples: Sequence[int] = (1, 4, 16)) -> list[str]:
    raw = scratch / "photos"
    print(f"writing {16 * n * 13 // 8} synthetic 256x256 JPEGs...", flush=True)
    files = synthetic_photos(raw, 16 * n * 13 // 8)
    peaks: dict[tuple[str, str, int], float] = {}
    for count in (multiple * n for multiple in multiples):
        entries = split_entries(files, count, raw)
        for side in sides:
            project = side.project(scratch / "memory", raw, entries, {"resize.size": [224, 224],
                                                                       "train.model": "simple_cnn",
                                                                       "train.epochs": 1})
            for stage in stages:
                seconds, peak = side.run(stage, project)
                peaks[side.name, stage, count] = peak
                print(f"  {count:>6} training images, {side.name:>5} {stage:>8}: peak {peak:7.0f} MB, {seconds:6.1f} s",
                      flush=True)
    lines: list[str] = []
    if tuple(multiples) != (1, 4, 16):
        return lines  # a partial run: its figures are the lines printed above
    for stage in stages:
        ours = [peaks["ours", stage, count] for count in (n, 4 * n, 16 * n)]
        growth = ours[2] / ours[0]
        verdict = targets.check(f"{stage} memory flat in N", growth <= 1.15 and max(ours) < 3 * 1024)
        line = (f"{stage:>8} peak MB at N={n}, 4N, 16N: ours {ours[0]:.0f} / {ours[1]:.0f} / {ours[2]:.0f} "
                f"(16N/N {growth:.2f}x)")
        if any(side.name == "today" for side in sides):
            today = [peaks["today", stage, count] for count in (n, 4 * n, 16 * n)]
            line += f"; today {today[0]:.0f} / {today[1]:.0f} / {today[2]:.0f} (16N/N {today[2] / today[0]:.2f}x)"
        lines.append(f"{line}  [target 16N/N <= 1.15x and < 3 GB: {verdict}]")
    return lines


def evaluate_memory_figure(side: Side, scratch: Path, test_images: int, targets: Targets) -> str:
    """The evaluate stage's peak at T, 4T and 16T test images, with one model (trained once on 200
    images: the evaluate stage's memory depends on the test split, not on the training split)."""
    raw = scratch / "photos"
    files = synthetic_photos(raw, 250 + 16 * test_images)
    settings = {"resize.size": [224, 224], "train.model": "simple_cnn", "train.epochs": 1}
    models = scratch / "evaluated-model"
    peaks = []
    for count in (test_images, 4 * test_images, 16 * test_images):
        entries = split_entries(files, 0, raw, {"train": 200, "val": 50, "test": count})
        project = side.project(scratch / "evaluate-memory", raw, entries, settings)
        side.run("resize", project)
        if not models.exists():
            side.run("train", project)
            shutil.copytree(project / "models", models)
        else:
            shutil.copytree(models, project / "models")
        seconds, peak = side.run("evaluate", project)
        peaks.append(peak)
        print(f"  {count:>6} test images, {side.name:>5} evaluate: peak {peak:7.0f} MB, {seconds:6.1f} s", flush=True)
    verdict = targets.check("evaluate memory flat in the test split", peaks[2] <= 1.15 * peaks[0] and
                            max(peaks) < 3 * 1024)
    return (f"evaluate peak MB at T={test_images}, 4T, 16T test images: {side.name} {peaks[0]:.0f} / {peaks[1]:.0f} / "
            f"{peaks[2]:.0f} (16T/T {peaks[2] / peaks[0]:.2f}x)  [target <= 1.15x and < 3 GB: {verdict}]")


def speed_figure(sides: Sequence[Side], scratch: Path, label: str, files: Sequence[tuple[str, str]], raw: Path,
                 train_images: int, settings: dict[str, Any], targets: Targets, repeats: int) -> str:
    """Each side's train stage ``repeats`` times, the sides taking turns; the best run of each counts
    (as ``timeit`` takes the best: this shared machine's own speed moves between runs)."""
    entries = split_entries(files, train_images, raw)
    projects = {}
    for side in sides:
        projects[side.name] = side.project(scratch / "speed", raw, entries, {"train.epochs": 3, **settings})
        side.run("resize", projects[side.name])
    runs: dict[str, list[tuple[float, float]]] = {side.name: [] for side in sides}
    for _ in range(repeats):
        for side in sides:
            drop_from_page_cache(projects[side.name] / "data" / "resized")
            side.run("train", projects[side.name])
            first, later = epoch_rates(projects[side.name])
            runs[side.name].append((first, later))
            print(f"  {label}, {side.name}: first epoch {first:.0f}, later {later:.0f} images/s", flush=True)
    rates = {name: (max(first for first, _ in measured), max(later for _, later in measured))
             for name, measured in runs.items()}
    first, later = (rates["ours"][index] / rates["today"][index] for index in (0, 1))
    verdict = targets.check(f"speed {label}", min(first, later) >= 0.95)
    return (f"{label}: ours {rates['ours'][0]:.0f} / {rates['ours'][1]:.0f} images/s (first / later epochs, best of "
            f"{repeats}), today {rates['today'][0]:.0f} / {rates['today'][1]:.0f}: {first:.2f}x / {later:.2f}x  "
            f"[target >= 0.95x: {verdict}]")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="training images at the smallest size (N)")
    parser.add_argument("--baseline", default=BASELINE_COMMIT, help="the commit to compare with")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--multiples", nargs="+", type=int, default=[1, 4, 16],
                        help="measure memory at these multiples of N only (then no ratios are printed)")
    parser.add_argument("--only-ours", action="store_true", help="leave out the baseline")
    parser.add_argument("--evaluate-test-images", type=int, default=0,
                        help="also measure the evaluate stage at T, 4T, 16T test images (T, e.g. 400)")
    parser.add_argument("--repeats", type=int, default=2, help="train stage runs per side for each speed figure")
    parser.add_argument("--speed-runs", nargs="+", choices=SPEED_RUNS, default=list(SPEED_RUNS),
                        help="the speed figures to measure")
    parser.add_argument("--stages", nargs="+", default=["resize", "train", "evaluate"],
                        help="the stages whose memory to measure (each needs the ones before it)")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GB, "
          f"Python {platform.python_version()}")
    targets = Targets()
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="streaming-bench-") as scratch_name:
        scratch = Path(scratch_name)
        baseline = scratch / "baseline-checkout"
        subprocess.run(["git", "worktree", "add", "--detach", str(baseline), args.baseline], cwd=REPOSITORY,
                       check=True, capture_output=True)
        try:
            sides = [Side("today", baseline, packed_as_npz=True), Side("ours", REPOSITORY, packed_as_npz=False)]
            sides = sides[1:] if args.only_ours else sides
            if not args.skip_memory:
                lines += memory_figures(sides, scratch, args.n, targets, args.stages, args.multiples)
            if args.evaluate_test_images:
                lines += [evaluate_memory_figure(side, scratch, args.evaluate_test_images, targets) for side in sides]
            if not args.skip_speed:
                cifar_raw = scratch / "cifar"
                cifar = cifar_images(cifar_raw, per_class=1000)
                runs: list[tuple[str, Callable[[], str]]] = [
                    ("cifar-simple_cnn", lambda: speed_figure(
                        sides, scratch, "32x32 CIFAR-10, simple_cnn", cifar, cifar_raw, 6_000,
                        {"resize.size": [32, 32]}, targets, args.repeats)),
                    ("cifar-fast_cnn", lambda: speed_figure(
                        sides, scratch, "32x32 CIFAR-10, fast_cnn recipe", cifar, cifar_raw, 3_600,
                        {"resize.size": [32, 32], **FAST_CNN}, targets, args.repeats)),
                ]
                photos_raw = scratch / "photos"
                runs.append(("224-simple_cnn", lambda: speed_figure(
                    sides, scratch, "224x224, simple_cnn", synthetic_photos(photos_raw, 400 * 13 // 8), photos_raw,
                    400, {"resize.size": [224, 224]}, targets, args.repeats)))
                lines += [measure() for name, measure in runs if name in args.speed_runs]
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(baseline)], cwd=REPOSITORY,
                           capture_output=True)
            subprocess.run(["git", "worktree", "prune"], cwd=REPOSITORY, check=True)  # if the removal failed
    print("\n".join(lines))
    return targets.exit_status()


if __name__ == "__main__":
    sys.exit(main())

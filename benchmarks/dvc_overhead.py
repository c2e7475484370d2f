"""DVC overhead on the 60,000 real CIFAR-10 images: the cost of running the pipeline through DVC.

    .venv/bin/python benchmarks/dvc_overhead.py            # about 10 minutes on 2 cores

In a temporary git + DVC repository holding a copy of the pipeline (as the tests make one), with
the images of ../shared/datasets unpacked as a ``folder`` source and ``train.epochs: 1``:

1. ``dvc repro`` from nothing (timed, for reference);
2. a no-op ``dvc repro``, three times: the median (target: under 5 s);
3. ``train.learning_rate`` changed, then ``dvc repro``: its wall time minus the time the train
   stage spent between "training ..." and "best epoch ..." in its log (target: under 10 s);
4. the disk used by data/, models/ and the DVC cache together, hard links counted once, against
   the images' own size (target: at most 2.5x).

The last line is the no-op time.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = ROOT.parent / "shared" / "datasets" / "cifar10-jpg.tar.gz"
sys.path.insert(0, str(ROOT))  # the project copy is made as the end-to-end tests make theirs

from targets import Targets  # noqa: E402  (benchmarks/targets.py, beside this script)

from tests.helpers import command_env, make_project, set_params  # noqa: E402


def run(args: list[str], cwd: Path) -> tuple[float, str]:
    """Run a command as the tests do; return its wall time and output, or stop with its output."""
    start = time.perf_counter()
    result = subprocess.run(args, cwd=cwd, env=command_env(), text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{result.stdout[-4000:]}")
    return seconds, result.stdout


def cifar_project(destination: Path, images: Path) -> Path:
    """The pipeline in a fresh committed repository, reading ``images`` as a folder source, 1 epoch."""
    project = make_project(destination)
    set_params(project, **{"data.source": "folder", "data.path": str(images), "train.epochs": 1})
    run(["git", "commit", "-qam", "CIFAR-10 images, 1 epoch"], project)
    return project


def training_seconds(log: str) -> float:
    """Seconds between the train stage's "training ..." and "best epoch ..." log lines (1 s resolution)."""
    start = re.search(r"^(\d\d:\d\d:\d\d) INFO\s+__main__: training ", log, re.M)
    end = re.search(r"^(\d\d:\d\d:\d\d) INFO\s+imgclf\.training: best epoch", log, re.M)
    if not (start and end):
        sys.exit("the train stage's log lines were not found")
    parse = lambda stamp: datetime.strptime(stamp, "%H:%M:%S")  # noqa: E731
    return (parse(end.group(1)) - parse(start.group(1))).total_seconds()


def disk_bytes(*paths: Path) -> int:
    """Bytes on disk of everything under ``paths``, each hard-linked file counted once (as du does)."""
    result = subprocess.run(["du", "-s", "--block-size=1", *map(str, paths)], capture_output=True, text=True,
                            check=True)
    return sum(int(line.split()[0]) for line in result.stdout.splitlines())


def main() -> int:
    targets = Targets()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args()
    if not ARCHIVE.exists():
        sys.exit(f"{ARCHIVE} is missing: this benchmark needs the real CIFAR-10 images in ../shared/datasets.")
    with tempfile.TemporaryDirectory(prefix="dvc-bench-") as scratch:
        with tarfile.open(ARCHIVE) as tar:
            tar.extractall(scratch, filter="data")
        images = Path(scratch) / "cifar10"
        image_count = sum(1 for _ in images.rglob("*.jpg"))
        apparent = sum(path.stat().st_size for path in images.rglob("*.jpg"))
        on_disk = disk_bytes(images)
        print(f"{image_count:,} CIFAR-10 JPEGs: {apparent / 1e6:.1f} MB of data, {on_disk / 1e6:.1f} MB on disk")
        project = cifar_project(Path(scratch) / "project", images)

        seconds, log = run(["dvc", "repro"], project)
        print(f"first dvc repro (train.epochs 1): {seconds:.0f} s, of which training {training_seconds(log):.0f} s")

        no_op = []
        for _ in range(3):
            seconds, log = run(["dvc", "repro"], project)
            assert "Running stage" not in log, log
            no_op.append(seconds)
        print(f"no-op dvc repro: {', '.join(f'{s:.2f}' for s in no_op)} s; median {statistics.median(no_op):.2f} s "
              f"(target < 5 s): {targets.check('no-op dvc repro < 5 s', statistics.median(no_op) < 5)}")

        set_params(project, **{"train.learning_rate": 0.002})
        seconds, log = run(["dvc", "repro"], project)
        stages = re.findall(r"Running stage '(\w+)'", log)
        outside = seconds - training_seconds(log)
        print(f"after train.learning_rate changed: dvc repro ran {', '.join(stages)} in {seconds:.1f} s, "
              f"{outside:.1f} s of it outside training (target < 10 s): "
              f"{targets.check('time outside training < 10 s', outside < 10)}")

        used = disk_bytes(project / "data", project / "models", project / ".dvc" / "cache")
        print(f"disk: data/ + models/ + .dvc/cache = {used / 1e6:.1f} MB, {used / on_disk:.2f}x the images on disk, "
              f"{used / apparent:.2f}x their data (target <= 2.5x): "
              f"{targets.check('disk <= 2.5x the images', used / apparent <= 2.5)}")
        for part in ("data/raw", "data/raw_index.csv", "data/split.csv", "data/resized", "models", ".dvc/cache"):
            print(f"  {part:<14} {disk_bytes(project / part) / 1e6:8.1f} MB alone")
    print(f"no-op dvc repro seconds (median): {statistics.median(no_op):.2f}")
    return targets.exit_status()


if __name__ == "__main__":
    sys.exit(main())

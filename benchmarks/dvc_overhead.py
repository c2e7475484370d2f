"""DVC overhead on the 60,000 real CIFAR-10 images: the cost of running the pipeline through DVC.

    .venv/bin/python benchmarks/dvc_overhead.py            # about 10 minutes on 2 cores

In a temporary git + DVC repository holding a copy of the pipeline (as the tests make one), with
the images of ../shared/datasets unpacked as a ``folder`` source and ``train.epochs: 1``:

1. ``dvc repro`` from nothing (timed, for reference);
2. a no-op ``dvc repro``, three times: the median (target: under 5 s), beside the same in a project
   made from ``--baseline`` (a git worktree of an older commit, its own src/ imported), the two
   taking turns, so that a slower machine shows in both;
3. ``train.learning_rate`` changed, then ``dvc repro``: its wall time minus the time the train
   stage spent between "training ..." and "best epoch ..." in its log (target: under 10 s);
4. the disk used by data/, models/ and the DVC cache together, hard links counted once, against
   the images' own size (target: at most 2.5x).

The last line is the no-op time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = ROOT.parent / "shared" / "datasets" / "cifar10-jpg.tar.gz"
sys.path.insert(0, str(ROOT))  # the project copy is made as the end-to-end tests make theirs

from targets import Targets  # noqa: E402  (benchmarks/targets.py, beside this script)

from tests.helpers import command_env, make_project, set_params  # noqa: E402

BASELINE_COMMIT = "2dbb2f7"  # the last commit before the sharded hand-off: each resized split one whole .npz


def run(args: list[str], cwd: Path) -> tuple[float, str]:
    """Run a command as the tests do, importing ``cwd``'s own src/ (so a baseline copy runs its own
    code); return its wall time and output, or stop with its output."""
    env = {**command_env(), "PYTHONPATH": str(cwd / "src")}
    start = time.perf_counter()
    result = subprocess.run(args, cwd=cwd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{result.stdout[-4000:]}")
    return seconds, result.stdout


def cifar_project(destination: Path, images: Path, checkout: Path) -> Path:
    """``checkout``'s pipeline in a fresh committed repository, reading ``images`` as a folder source, 1 epoch."""
    project = make_project(destination, checkout)
    set_params(project, **{"data.source": "folder", "data.path": str(images), "train.epochs": 1})
    run(["git", "commit", "-qam", "CIFAR-10 images, 1 epoch"], project)
    return project


def training_seconds(project: Path, log: str) -> float:
    """The seconds of the training's epochs (``seconds`` of logs/train_timing.json); for an older
    checkout without that record, the time between the train stage's "training ..." and "best epoch
    ..." log lines (1 s resolution; the logger that writes them moved in the stages' tidy-up)."""
    timing = project / "logs" / "train_timing.json"
    if timing.is_file():
        return float(json.loads(timing.read_text())["seconds"])
    logger = r"(?:__main__|imgclf\.training(?:\.loop)?)"
    start = re.search(rf"^(\d\d:\d\d:\d\d) INFO\s+{logger}: training ", log, re.M)
    end = re.search(rf"^(\d\d:\d\d:\d\d) INFO\s+{logger}: best epoch", log, re.M)
    if not (start and end):
        sys.exit("the train stage's log lines were not found")
    parse = lambda stamp: datetime.strptime(stamp, "%H:%M:%S")  # noqa: E731
    return (parse(end.group(1)) - parse(start.group(1))).total_seconds()


def disk_bytes(*paths: Path) -> int:
    """Bytes on disk of everything under ``paths``, each hard-linked file counted once (as du does)."""
    result = subprocess.run(["du", "-s", "--block-size=1", *map(str, paths)], capture_output=True, text=True,
                            check=True)
    return sum(int(line.split()[0]) for line in result.stdout.splitlines())


@contextlib.contextmanager
def worktree(commit: str, path: Path) -> Iterator[Path]:
    """A detached git worktree of ``commit`` at ``path``, removed (and unregistered) afterwards."""
    subprocess.run(["git", "worktree", "add", "--detach", str(path), commit], cwd=ROOT, check=True,
                   capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, check=False,
                       capture_output=True)
        subprocess.run(["git", "worktree", "prune"], cwd=ROOT, check=True)


def no_op_seconds(projects: dict[str, Path], repeats: int) -> dict[str, list[float]]:
    """Each project's no-op ``dvc repro`` times, the sides taking turns so that both meet the same machine."""
    seconds: dict[str, list[float]] = {name: [] for name in projects}
    for _ in range(repeats):
        for name, project in projects.items():
            elapsed, log = run(["dvc", "repro"], project)
            assert "Running stage" not in log, log
            seconds[name].append(elapsed)
    return seconds


def main() -> int:
    targets = Targets()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default=BASELINE_COMMIT,
                        help="the commit whose no-op dvc repro to time beside ours in the same run")
    parser.add_argument("--skip-baseline", action="store_true", help="time only this checkout")
    args = parser.parse_args()
    if not ARCHIVE.exists():
        sys.exit(f"{ARCHIVE} is missing: this benchmark needs the real CIFAR-10 images in ../shared/datasets.")
    with tempfile.TemporaryDirectory(prefix="dvc-bench-") as scratch_name, contextlib.ExitStack() as stack:
        scratch = Path(scratch_name)
        with tarfile.open(ARCHIVE) as tar:
            tar.extractall(scratch, filter="data")
        images = scratch / "cifar10"
        image_count = sum(1 for _ in images.rglob("*.jpg"))
        apparent = sum(path.stat().st_size for path in images.rglob("*.jpg"))
        on_disk = disk_bytes(images)
        print(f"{image_count:,} CIFAR-10 JPEGs: {apparent / 1e6:.1f} MB of data, {on_disk / 1e6:.1f} MB on disk")
        checkouts = {"ours": ROOT}
        if not args.skip_baseline:
            checkouts[f"baseline {args.baseline}"] = stack.enter_context(
                worktree(args.baseline, scratch / "baseline-checkout"))
        projects = {}
        for index, (name, checkout) in enumerate(checkouts.items()):
            projects[name] = cifar_project(scratch / f"project-{index}", images, checkout)
            seconds, log = run(["dvc", "repro"], projects[name])
            print(f"{name}: first dvc repro (train.epochs 1): {seconds:.0f} s, "
                  f"of which training {training_seconds(projects[name], log):.0f} s")

        no_op = {name: statistics.median(times) for name, times in no_op_seconds(projects, repeats=3).items()}
        for name, median in no_op.items():
            print(f"{name}: no-op dvc repro, median of 3: {median:.2f} s")
        ours = no_op["ours"]
        print(f"no-op dvc repro (target < 5 s): {ours:.2f} s: {targets.check('no-op dvc repro < 5 s', ours < 5)}")
        for name, median in no_op.items():
            if name != "ours":
                print(f"  ours / {name}: {ours / median:.2f}x "
                      f"(target <= 1.0x): {targets.check(f'no-op not worse than {name}', ours <= median * 1.05)}")

        project = projects["ours"]
        set_params(project, **{"train.learning_rate": 0.002})
        seconds, log = run(["dvc", "repro"], project)
        stages = re.findall(r"Running stage '(\w+)'", log)
        outside = seconds - training_seconds(project, log)
        print(f"after train.learning_rate changed: dvc repro ran {', '.join(stages)} in {seconds:.1f} s, "
              f"{outside:.1f} s of it outside training (target < 10 s): "
              f"{targets.check('time outside training < 10 s', outside < 10)}")

        used = disk_bytes(project / "data", project / "models", project / ".dvc" / "cache")
        print(f"disk: data/ + models/ + .dvc/cache = {used / 1e6:.1f} MB, {used / on_disk:.2f}x the images on disk, "
              f"{used / apparent:.2f}x their data (target <= 2.5x): "
              f"{targets.check('disk <= 2.5x the images', used / apparent <= 2.5)}")
        for part in ("data/raw", "data/raw_index.csv", "data/split.csv", "data/resized", "models", ".dvc/cache"):
            print(f"  {part:<14} {disk_bytes(project / part) / 1e6:8.1f} MB alone")
    print(f"no-op dvc repro seconds (median): {ours:.2f}")
    return targets.exit_status()


if __name__ == "__main__":
    sys.exit(main())

"""Experiment turnaround on the offline default: every second of a run that is not training.

    .venv/bin/python benchmarks/turnaround.py [--baseline <commit>]   # 8 minutes on 2 cores; 16 with a baseline

In fresh git + DVC projects made from this checkout (as the tests make them), with the stages'
timeline on (``IMGCLF_TIMELINE``, :mod:`imgclf.plumbing.timeline`):

1. ``dvc repro`` from nothing, ``--repeats`` times, each in a new project (target: median at most 25 s);
2. in the last of them, ``dvc exp run -S train.learning_rate=X``, ``--repeats`` times with new
   rates (target: median time outside the training epochs at most 10 s).

For each, the median seconds of every part: per stage process, its start-up (Python and the
script's imports, until its ``main`` begins), the imports inside ``main`` (the stages import Keras
and the library lazily) and the rest of ``main`` (reading, the work, writing); the training epochs
of ``logs/train_timing.json``, inside the train stage's main; the processes a stage starts (the ONNX
copy's, the heatmaps'), which overlap their stage; and DVC's own time: the run's wall time outside
every stage process (its start, hashing outputs, writing dvc.lock, the experiment's commit).
With ``--baseline``, a git worktree of that commit is timed the same way, the two taking turns so
that a slower moment of the machine meets both (this machine's speed varies by half within an hour).
Both sides import the installed packages of this checkout's .venv; for a change of requirements.txt,
``--baseline-packages`` gives the baseline the versions it had, installed apart, for example::

    .venv/bin/pip install --no-deps --target /tmp/before ml-dtypes==0.7.0
    .venv/bin/python benchmarks/turnaround.py --baseline 880ae90 --baseline-packages /tmp/before
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the project copy is made as the end-to-end tests make theirs

from dvc_overhead import worktree  # noqa: E402  (the same git worktree of a baseline as there)
from targets import Targets  # noqa: E402  (benchmarks/targets.py, beside this script)

from imgclf.plumbing.timeline import TIMELINE_VARIABLE  # noqa: E402
from tests.helpers import command_env, make_project  # noqa: E402

TARGET_OUTSIDE_TRAINING = 10.0
TARGET_FROM_NOTHING = 25.0
LEARNING_RATES = ("0.003", "0.002", "0.0015", "0.0025", "0.0012")


def timed_run(args: list[str], project: Path, packages: Path | None = None) -> dict[str, float]:
    """Run ``args`` in ``project`` (importing the project's own src/, so that a baseline runs its own
    code, and then ``packages`` before the installed ones) with the timeline on; return the seconds of
    each of its parts (a baseline from before the timeline: its wall time and, where it wrote
    logs/train_timing.json, the time outside training)."""
    timeline = project / "timeline.jsonl"
    timeline.unlink(missing_ok=True)
    path = [str(project / "src")] + ([str(packages)] if packages else [])
    environment = {**command_env(), TIMELINE_VARIABLE: str(timeline), "PYTHONPATH": os.pathsep.join(path)}
    start = time.time()
    result = subprocess.run(args, cwd=project, env=environment, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, check=False)
    end = time.time()
    if result.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{result.stdout[-4000:]}")
    parts: dict[str, float] = defaultdict(float)
    records = [json.loads(line) for line in timeline.read_text().splitlines()] if timeline.is_file() else []
    stages = sorted((record for record in records if Path(record["script"]).parent.name == "stages"),
                    key=lambda record: record["started"])
    for record in records:
        name = Path(record["script"]).stem
        if record in stages:  # a stage's own script, as dvc.yaml runs it
            parts[f"{name}: start-up"] += record["main"] - record["started"]
            parts[f"{name}: imports in main"] += record["imports"]
            parts[f"{name}: rest of main"] += record["ended"] - record["main"] - record["imports"]
        else:  # a process a stage started: inside its stage's time, not added to the total
            parts[f"  ({name} process, overlapping its stage)"] += record["ended"] - record["started"]
    if stages:
        parts["DVC before the first stage"] = stages[0]["started"] - start
        parts["DVC between stages"] = sum(later["started"] - earlier["ended"]
                                          for earlier, later in zip(stages, stages[1:], strict=False))
        parts["DVC after the last stage"] = end - stages[-1]["ended"]
    timing = project / "logs/train_timing.json"
    if timing.is_file() and timing.stat().st_mtime >= start:  # the train stage ran
        epochs = json.loads(timing.read_text())["seconds"]
        parts["  (train: of its main, the training epochs)"] = epochs
        parts["outside training"] = end - start - epochs
    parts["wall"] = end - start
    return parts


def report(title: str, runs: list[dict[str, float]]) -> dict[str, float]:
    """Print the median of each part over ``runs``; return the medians."""
    names = list(dict.fromkeys(name for run in runs for name in run))
    medians = {name: statistics.median(run.get(name, 0.0) for run in runs) for name in names}
    print(f"\n{title}, median of {len(runs)}:")
    for name in sorted(names, key=lambda name: (name in ("outside training", "wall"), name.startswith("DVC"))):
        print(f"  {name:<48} {medians[name]:6.2f} s")
    return medians


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", help="a commit to time beside this checkout, the two taking turns")
    parser.add_argument("--baseline-packages", type=Path,
                        help="a folder of packages that the baseline's processes import before the installed "
                             "ones, for a change of requirements.txt: pip install --no-deps --target FOLDER "
                             "NAME==VERSION")
    args = parser.parse_args()
    from imgclf.modeling.devices import describe_cpu  # imports Keras: not at the top, so that --help is quick

    targets = Targets()
    print(f"machine: {describe_cpu()}")
    with tempfile.TemporaryDirectory(prefix="turnaround-") as scratch_name, contextlib.ExitStack() as stack:
        scratch = Path(scratch_name)
        checkouts = {"ours": ROOT}
        packages: dict[str, Path | None] = {"ours": None}
        if args.baseline:
            checkouts[f"baseline {args.baseline}"] = stack.enter_context(
                worktree(args.baseline, scratch / "baseline-checkout"))
            packages[f"baseline {args.baseline}"] = args.baseline_packages
        from_nothing: dict[str, list[dict[str, float]]] = defaultdict(list)
        projects: dict[str, Path] = {}
        for repeat in range(args.repeats):
            for side, checkout in checkouts.items():
                projects[side] = make_project(scratch / f"{side.split()[0]}-{repeat}", checkout)
                from_nothing[side].append(timed_run(["dvc", "repro"], projects[side], packages[side]))
                print(f"{side}: dvc repro from nothing, run {repeat + 1}: {from_nothing[side][-1]['wall']:.1f} s",
                      flush=True)
        for project in projects.values():
            subprocess.run(["git", "add", "-A"], cwd=project, check=True, capture_output=True)
            subprocess.run(["git", "commit", "-qm", "outputs"], cwd=project, check=True, capture_output=True,
                           env=command_env())
        experiments: dict[str, list[dict[str, float]]] = defaultdict(list)
        for rate in LEARNING_RATES[:args.repeats]:
            for side, project in projects.items():
                run = timed_run(["dvc", "exp", "run", "-S", f"train.learning_rate={rate}"], project, packages[side])
                experiments[side].append(run)
                print(f"{side}: dvc exp run -S train.learning_rate={rate}: {run['wall']:.1f} s, "
                      f"{run['outside training']:.1f} s outside training", flush=True)
    medians = {}
    for side in checkouts:
        medians[side] = (report(f"{side}: dvc repro from nothing (the default)", from_nothing[side]),
                         report(f"{side}: dvc exp run -S train.learning_rate=X (the default)", experiments[side]))
    print()
    for side, (repro, experiment) in medians.items():
        print(f"{side}: dvc repro from nothing {repro['wall']:.1f} s; dvc exp run {experiment['wall']:.1f} s, of "
              f"which outside training {experiment['outside training']:.1f} s")
    repro, experiment = medians["ours"]
    print(f"dvc repro from nothing: {repro['wall']:.1f} s (target <= {TARGET_FROM_NOTHING:.0f} s): "
          f"{targets.check('repro from nothing', repro['wall'] <= TARGET_FROM_NOTHING)}")
    print(f"dvc exp run, outside training: {experiment['outside training']:.1f} s of {experiment['wall']:.1f} s "
          f"(target <= {TARGET_OUTSIDE_TRAINING:.0f} s): "
          f"{targets.check('outside training', experiment['outside training'] <= TARGET_OUTSIDE_TRAINING)}")
    return targets.exit_status()


if __name__ == "__main__":
    sys.exit(main())

"""The default run's time: `dvc repro` from nothing on the offline default (the 1,797 digits), ours
against a baseline commit, in the same run.

    .venv/bin/python benchmarks/default_run_time.py --baseline <commit>     # about 6 minutes on 2 cores

Each side is the pipeline of its checkout (this one; a git worktree of ``--baseline``) in a fresh
git + DVC repository, as the tests make one, run ``--repeats`` times from nothing, the sides taking
turns so that a slower moment of the machine meets both. Prints each side's median and, last, the
ratio (target for the insight features: at most 1.10).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the project copy is made as the end-to-end tests make theirs

from dvc_overhead import run, worktree  # noqa: E402  (the same command runner and worktree as there)
from targets import Targets  # noqa: E402

from tests.helpers import make_project  # noqa: E402

TARGET_RATIO = 1.10


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", required=True, help="the commit to time beside this checkout")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    targets = Targets()
    seconds: dict[str, list[float]] = {"ours": [], f"baseline {args.baseline}": []}
    with tempfile.TemporaryDirectory(prefix="default-run-") as scratch_name, contextlib.ExitStack() as stack:
        scratch = Path(scratch_name)
        checkouts = {"ours": ROOT, f"baseline {args.baseline}": stack.enter_context(
            worktree(args.baseline, scratch / "baseline-checkout"))}
        for repeat in range(args.repeats):
            for index, (name, checkout) in enumerate(checkouts.items()):
                project = make_project(scratch / f"project-{index}-{repeat}", checkout)
                elapsed, _ = run(["dvc", "repro"], project)
                seconds[name].append(elapsed)
                print(f"{name}, run {repeat + 1}: dvc repro {elapsed:.1f} s", flush=True)
                shutil.rmtree(project)
    medians = {name: statistics.median(times) for name, times in seconds.items()}
    for name, median in medians.items():
        print(f"{name}: median of {args.repeats}: {median:.1f} s")
    ratio = medians["ours"] / medians[f"baseline {args.baseline}"]
    print(f"default dvc repro, ours over the baseline (target <= {TARGET_RATIO}): {ratio:.3f}: "
          f"{targets.check(f'default run <= {TARGET_RATIO}x', ratio <= TARGET_RATIO)}")
    return targets.exit_status()


if __name__ == "__main__":
    sys.exit(main())

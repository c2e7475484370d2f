"""``imgclf tune`` on the 2,000 real flower photos: does a search find better params than the photos
recipe's own, at the same epochs, and what does pruning save?

    .venv/bin/python benchmarks/tune_photos.py      # about 50 minutes on 2 cores; needs ../shared/datasets

A fresh project with the photos as a ``folder`` source and the photos recipe applied
(``imgclf recipe photos --apply``), at 64x64 and 8 epochs without CutMix. ``dvc repro`` runs the recipe's own
params (the baseline, timed); then ``imgclf tune benchmarks/photos_search.yaml --jobs 2`` runs 16
trials of 8 epochs, two at a time, over the recipe's learning rate, weight decay, label smoothing
and augmentation strengths (its first trial is the recipe's own values). Printed: the best trial's
validation accuracy against the recipe's, the search's wall time, how many trials were pruned and
the epochs (and, at the complete trials' seconds per epoch, the minutes) that saved.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = ROOT.parent / "shared" / "datasets" / "flowers-photos.tar"
SEARCH = Path(__file__).resolve().parent / "photos_search.yaml"
sys.path.insert(0, str(ROOT))  # the project copy is made as the end-to-end tests make theirs

from dvc_overhead import run  # noqa: E402  (the benchmarks' one way to run a command in a project)
from targets import Targets  # noqa: E402  (benchmarks/targets.py, beside this script)

from tests.helpers import make_project, set_params  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=8, help="each trial's epochs (and the baseline's)")
    parser.add_argument("--jobs", type=int, default=2, help="trials at once")
    parser.add_argument("--trials", type=int, help="override the search file's 16 trials")
    args = parser.parse_args()
    if not ARCHIVE.exists():
        sys.exit(f"{ARCHIVE} is missing: this benchmark needs the real flower photos in ../shared/datasets.")
    targets = Targets()
    with tempfile.TemporaryDirectory(prefix="tune-photos-") as scratch_name:
        scratch = Path(scratch_name)
        with tarfile.open(ARCHIVE) as tar:
            tar.extractall(scratch, filter="data")
        project = make_project(scratch / "project", heatmaps=False)
        set_params(project, **{"data.source": "folder", "data.path": str(scratch / "flowers")})
        run(["imgclf", "recipe", "photos", "--apply"], project)
        # as the recipe was when this search was measured (24 epochs without CutMix, 5 of warm-up):
        # mixed labels need more epochs than a search's trials have
        set_params(project, **{"train.epochs": args.epochs, "train.warmup_epochs": min(5.0, args.epochs - 1),
                                "train.cutmix": 0.0})
        (project / "tune.yaml").write_text(SEARCH.read_text())
        run(["git", "add", "-A"], project)
        run(["git", "commit", "-qm", "photos recipe, a search"], project)
        repro_seconds, _ = run(["dvc", "repro"], project)
        recipe = json.loads((project / "metrics" / "train.json").read_text())["val_accuracy"]
        print(f"the photos recipe at {args.epochs} epochs: val accuracy {recipe:.4f}; dvc repro from nothing "
              f"{repro_seconds / 60:.1f} min", flush=True)
        run(["git", "add", "dvc.lock", "metrics"], project)  # imgclf tune starts each trial from git's copy
        run(["git", "commit", "-qm", "the recipe's results"], project)
        command = ["imgclf", "tune", "--jobs", str(args.jobs)] + (["--trials", str(args.trials)] if args.trials else [])
        seconds, output = run(command, project)
        print(output.strip()[-3000:], flush=True)
        with open(project / "logs" / "tune" / "photos-search" / "trials.csv", newline="") as handle:
            trials = list(csv.DictReader(handle))
    finished = [row for row in trials if row["state"] in ("COMPLETE", "PRUNED")]
    complete = [row for row in trials if row["state"] == "COMPLETE"]
    pruned = [row for row in trials if row["state"] == "PRUNED"]
    best = max(float(row["value"]) for row in complete)
    skipped_epochs = sum(int(row["planned_epochs"]) - int(row["epochs"]) for row in pruned)
    trained = [row for row in finished if int(row["epochs"] or 0) > 0]  # not the ones DVC's run cache restored
    seconds_per_epoch = sorted(float(row["seconds"]) / int(row["epochs"]) for row in trained)[len(trained) // 2]
    print("trial,state,val_accuracy,epochs,seconds,params")
    for row in trials:
        params = {key: value for key, value in row.items() if key.startswith("train.")}
        print(f"{row['number']},{row['state']},{row['value']},{row['epochs']},{row['seconds']},{params}")
    print(f"{len(finished)} trials of {args.epochs} epochs, {args.jobs} at once: {seconds / 60:.1f} min of wall time; "
          f"{len(pruned)} pruned, skipping {skipped_epochs} of {len(finished) * args.epochs} epochs "
          f"(about {skipped_epochs * seconds_per_epoch / args.jobs / 60:.1f} min of wall time at the trials' median "
          f"{seconds_per_epoch:.0f} s per epoch, two at once, each trial's start-up included)")
    print(f"best trial's validation accuracy {100 * best:.2f}% vs the recipe's own {100 * recipe:.2f}% at "
          f"{args.epochs} epochs: {100 * (best - recipe):+.2f} points; "
          f"{targets.check('the search beats the recipe', best >= recipe)}")
    return targets.exit_status()


if __name__ == "__main__":
    sys.exit(main())

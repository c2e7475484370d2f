"""End to end: the real ``dvc`` CLI runs the pipeline in a temporary git repository.

One repository is shared by the tests of this module, which run in the order a user works:
repro, repro again, a forced rerun, plots, then an experiment with one parameter changed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.helpers import make_project, run, set_params, write_image_folder

pytestmark = pytest.mark.slow

CLASSES = ("red", "green", "blue", "cyan")
IMAGES_PER_CLASS = 20
TRACKED_RESULTS = ("metrics/evaluate.json", "metrics/train.json", "metrics/data.json",
                   "metrics/predictions.csv", "metrics/skipped_download.csv", "metrics/skipped_resize.csv")


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '(\w+)'", output))


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """The project in a fresh git repo, with tiny params, after one `dvc repro` that is committed."""
    root = tmp_path_factory.mktemp("e2e")
    images = write_image_folder(root / "images", CLASSES, per_class=IMAGES_PER_CLASS)
    (images / "blue" / "notes.txt").write_text("a stray file in a class folder")
    # a JPEG cut short: its header passes the download stage, decoding fails in resize
    whole = (images / "red" / "001.jpg").read_bytes()
    (images / "red" / "cut.jpg").write_bytes(whole[:-100])
    project = make_project(root / "project")
    set_params(project, **{"data.source": "folder", "data.path": str(images), "resize.size": [16, 16],
                           "train.epochs": 3, "train.batch_size": 16, "split.val": 0.25, "split.test": 0.25})
    result = run(["dvc", "repro"], project)
    assert stages_run(result.stdout) == {"download", "split", "resize", "train", "evaluate"}
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "first run"], project)
    return project


def test_repro_writes_every_output(repo):
    for path in ("data/raw", "data/split", "data/resized/train", "models/model.keras", "models/classes.json",
                 "metrics/history/plots/metrics/val/loss.tsv", *TRACKED_RESULTS):
        assert (repo / path).exists(), path
    counts = json.loads((repo / "metrics/data.json").read_text())
    assert sum(counts["images"].values()) == len(CLASSES) * IMAGES_PER_CLASS
    assert counts["per_class"]["test"]["blue"] == 5
    assert sum(counts["unusable"].values()) == 1
    skipped = (repo / "metrics/skipped_download.csv").read_text()
    assert "notes.txt" in skipped and "not an image" in skipped
    unusable = (repo / "metrics/skipped_resize.csv").read_text()
    assert "red/cut.jpg,skipped," in unusable and "truncated" in unusable.lower()
    # the split costs no disk: its files are hard links to data/raw
    split_file = next((repo / "data/split/train/green").iterdir())
    assert split_file.stat().st_ino == (repo / "data/raw/green" / split_file.name).stat().st_ino
    assert json.loads((repo / "models/classes.json").read_text()) == sorted(CLASSES)
    evaluation = json.loads((repo / "metrics/evaluate.json").read_text())
    assert evaluation["test_images"] == 20 and set(evaluation["per_class"]) == set(CLASSES)


def test_second_repro_runs_no_stage(repo):
    result = run(["dvc", "repro"], repo)
    assert stages_run(result.stdout) == set()
    assert "didn't change" in result.stdout or "up to date" in result.stdout


def test_same_params_give_byte_identical_results(repo):
    before = {path: (repo / path).read_bytes() for path in TRACKED_RESULTS}
    result = run(["dvc", "repro", "--force"], repo)
    assert stages_run(result.stdout) == {"download", "split", "resize", "train", "evaluate"}
    for path, content in before.items():
        assert (repo / path).read_bytes() == content, f"{path} changed on a rerun with the same params"


def test_plots_show_renders_training_curves_and_confusion_matrix(repo):
    run(["dvc", "plots", "show", "-o", "dvc_plots"], repo)
    page = (repo / "dvc_plots" / "index.html").read_text()
    for title in ("Loss", "Accuracy", "Confusion matrix"):
        assert title in page
    # one chart per metric carries both splits; the confusion matrix carries every test image
    loss_chart = page[:page.index("vegaEmbed('#Loss'")]
    loss_chart = loss_chart[loss_chart.rindex("var spec"):]
    assert '"filename": "train/loss.tsv"' in loss_chart and '"filename": "val/loss.tsv"' in loss_chart
    assert page.count('"actual": "') == IMAGES_PER_CLASS * len(CLASSES) // 4


def test_exp_run_reruns_only_train_and_evaluate_and_metrics_diff_shows_it(repo):
    result = run(["dvc", "exp", "run", "-S", "train.epochs=2"], repo)
    assert stages_run(result.stdout) == {"train", "evaluate"}

    diff = json.loads(run(["dvc", "metrics", "diff", "--all", "--json"], repo).stdout)
    assert "accuracy" in diff["metrics/evaluate.json"]
    assert diff["metrics/train.json"]["epochs"] == {"old": 3, "new": 2, "diff": -1}
    table = run(["dvc", "metrics", "diff", "--all"], repo).stdout
    assert re.search(r"metrics/evaluate\.json\s+accuracy", table)

    shown = run(["dvc", "exp", "show", "--no-pager", "--csv"], repo).stdout
    assert "train.epochs" in shown.splitlines()[0] and "accuracy" in shown.splitlines()[0]

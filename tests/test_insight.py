"""End to end: what a run tells about its data and its model, on a real dataset with known answers.

scikit-learn's 1,797 handwritten digits, written as a folder of class subfolders, with the labels of
30 images deliberately wrong. After the real `dvc repro`: the evaluate stage ranks those of them it
could see (the validation and test images) among its most probable label issues, draws heatmaps of
where the model looked, and `imgclf predict --explain` and `imgclf lr-find` work on the result.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgclf.data.manifest import read_manifest
from tests.helpers import make_project, run, set_params

pytestmark = pytest.mark.slow

FLIPPED = 30


def write_digits_with_wrong_labels(root: Path, seed: int = 0) -> set[str]:
    """The digits as ``root/<digit>/<n>.png`` (32x32); ``FLIPPED`` of them, named ``flipped-<n>.png``,
    filed under another digit. Returns the flipped files' names."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    flipped = set(rng.choice(len(digits.target), FLIPPED, replace=False).tolist())
    names = set()
    for index, (pixels, digit) in enumerate(zip(digits.images, digits.target, strict=True)):
        label = int(digit)
        name = f"{index:04d}.png"
        if index in flipped:
            label = (label + int(rng.integers(1, 10))) % 10
            name = f"flipped-{index:04d}.png"
            names.add(name)
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray((pixels * 255 / 16).astype(np.uint8)).resize((32, 32), Image.Resampling.BILINEAR)
        image.convert("RGB").save(folder / name)
    return names


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> tuple[Path, set[str]]:
    root = tmp_path_factory.mktemp("insight")
    flipped = write_digits_with_wrong_labels(root / "digits")
    project = make_project(root / "project")
    set_params(project, **{"data.source": "folder", "data.path": str(root / "digits"), "train.epochs": 6})
    run(["dvc", "repro"], project)
    return project, flipped


def test_most_of_the_wrong_labels_the_model_never_trained_on_come_out_on_top(digits_run):
    project, flipped = digits_run
    subsets = {Path(entry.file).name: entry.subset for entry in read_manifest(project / "data/split.csv", "split")}
    unseen = {name for name in flipped if subsets[name] in ("val", "test")}
    assert len(unseen) >= 5  # the seed puts enough of them outside the training split

    with open(project / "metrics/label_issues.csv", newline="") as handle:
        issues = list(csv.DictReader(handle))
    top = [Path(row["file"]).name for row in issues[:2 * len(unseen)]]
    found = unseen & set(top)
    assert len(found) >= 0.8 * len(unseen), (sorted(unseen), top)
    first = next(row for row in issues if Path(row["file"]).name in found)
    assert first["given_label"] != first["suggested_label"] and float(first["label_quality"]) < 0.5
    assert (project / "metrics/figures/evaluate/label_issues.png").stat().st_size > 10_000


def test_the_heatmap_figures_are_drawn(digits_run):
    project, _ = digits_run
    assert (project / "models/heatmaps/scores.onnx").is_file()  # drawn by ONNX Runtime (test_heatmap_models.py)
    for name in ("mistakes_heatmaps", "samples_heatmaps"):
        picture = Image.open(project / "metrics/figures/evaluate" / f"{name}.png").convert("RGB")
        assert len(picture.getcolors(256 * 256) or []) > 200, name  # colour overlays, not a page of text


def test_predict_explain_writes_a_heatmap_beside_each_prediction(digits_run, tmp_path):
    project, _ = digits_run
    image = next((project / "data/raw/3").glob("0*.png"))
    result = run(["imgclf", "predict", str(image), "--explain", str(tmp_path / "why")], project)
    assert f"{image}: 3 " in result.stdout
    written = tmp_path / "why" / f"{image.stem}.heatmap.png"
    assert len(Image.open(written).convert("RGB").getcolors(256 * 256) or []) > 50


def test_lr_find_draws_the_sweep_and_prints_the_dvc_exp_run_line(digits_run):
    project, _ = digits_run
    result = run(["imgclf", "lr-find", "--steps", "60", "--start", "1e-5", "--end", "1"], project)
    line = re.search(r"^dvc exp run -S train\.learning_rate=(\S+)$", result.stdout, re.MULTILINE)
    assert line, result.stdout
    assert 1e-5 < float(line.group(1)) < 1
    assert (project / "logs/lr_find.png").stat().st_size > 10_000

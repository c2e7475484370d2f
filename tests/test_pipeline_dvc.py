"""End to end: the real ``dvc`` CLI runs the pipeline in a temporary git repository.

One repository is shared by the tests of this module, which run in the order a user works:
repro, repro again, a forced rerun, plots (opened in a real browser), then experiments with one
parameter changed, compared with `dvc metrics diff` and `dvc plots diff`.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from ruamel.yaml import YAML

from imgclf.data.manifest import read_manifest
from imgclf.plumbing.files import file_digest
from tests.helpers import (
    command_env,
    flat_figures,
    make_project,
    render_in_browser,
    run,
    set_params,
    write_image_folder,
)

pytestmark = pytest.mark.slow

CLASSES = ("red", "green", "blue", "cyan")
IMAGES_PER_CLASS = 20
ALL_STAGES = {"download", "split", "resize", "train", "evaluate", "export"}
TRACKED_RESULTS = ("metrics/evaluate.json", "metrics/class_scores.csv", "metrics/train.json", "metrics/data.json",
                   "metrics/data/splits.csv", "metrics/predictions.csv", "metrics/skipped_download.csv",
                   "metrics/skipped_resize.csv", "metrics/roc.csv", "metrics/precision_recall.csv",
                   "metrics/export.json", "metrics/label_issues.csv", "metrics/data/class_balance.csv",
                   "metrics/data/source_sizes.csv", "metrics/data/aspect_ratios.csv")
FIGURES = ("metrics/figures/resize/data.png", "metrics/figures/train/training_curves.png",
           "metrics/figures/evaluate/confusion_matrix.png",
           "metrics/figures/evaluate/roc.png", "metrics/figures/evaluate/precision_recall.png",
           "metrics/figures/evaluate/mistakes.png", "metrics/figures/evaluate/samples.png",
           "metrics/figures/evaluate/label_issues.png", "metrics/figures/evaluate/mistakes_heatmaps.png",
           "metrics/figures/evaluate/samples_heatmaps.png")


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
    assert stages_run(result.stdout) == ALL_STAGES
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "first run"], project)
    return project


def test_repro_writes_every_output(repo):
    for path in ("data/raw", "data/raw_index.csv", "data/split.csv", "data/resized/train/split.json",
                 "models/model.keras", "models/model.onnx", "models/classes.json", "models/preprocessing.json",
                 "models/summary.txt",
                 "metrics/history/plots/metrics/val/loss.tsv",
                 *TRACKED_RESULTS, *FIGURES):
        assert (repo / path).exists(), path


def test_every_image_is_counted_and_each_unusable_file_listed_with_its_reason(repo):
    counts = json.loads((repo / "metrics/data.json").read_text())
    assert sum(counts["images"].values()) == len(CLASSES) * IMAGES_PER_CLASS
    assert sum(counts["unusable"].values()) == 1
    balance = (repo / "metrics/data/class_balance.csv").read_text().splitlines()
    assert "test,blue (test),5" in balance
    skipped = (repo / "metrics/skipped_download.csv").read_text()
    assert "notes.txt" in skipped and "not an image" in skipped
    unusable = (repo / "metrics/skipped_resize.csv").read_text()
    assert "red/cut.jpg,skipped," in unusable and "truncated" in unusable.lower()


def test_the_data_is_handed_on_as_manifests_with_digests_and_packed_shards(repo):
    raw_files = sorted(path.relative_to(repo).as_posix() for path in (repo / "data/raw").rglob("*") if path.is_file()
                       and path.name != ".gitignore")
    for manifest in ("data/raw_index.csv", "data/split.csv"):
        entries = read_manifest(repo / manifest, "split")
        assert sorted(entry.file for entry in entries) == raw_files, manifest
        assert all(entry.sha256 == file_digest(repo / entry.file) for entry in entries), manifest
    assert sorted(path.name for path in (repo / "data/resized").iterdir()) == [
        ".gitignore", "preprocessing.json", "test", "train", "val"]
    assert sorted(path.name for path in (repo / "data/resized/train").iterdir()) == [
        "files.npy", "images-00000.npy", "labels.npy", "split.json"]


def test_the_model_folder_records_its_classes_input_and_layers(repo):
    assert json.loads((repo / "models/classes.json").read_text()) == sorted(CLASSES)
    assert json.loads((repo / "models/preprocessing.json").read_text()) == {
        "size": [16, 16], "mode": "stretch", "max_megapixels": 200.0}
    assert "Total params:" in (repo / "models/summary.txt").read_text()


def test_the_test_metrics_hold_the_headline_figures_and_a_row_per_class(repo):
    evaluation = json.loads((repo / "metrics/evaluate.json").read_text())
    assert evaluation["test_images"] == 20
    for metric in ("accuracy", "loss", "macro_f1", "roc_auc", "ece"):
        assert isinstance(evaluation[metric], float), metric
    assert "top_5_accuracy" not in evaluation  # 4 classes: top-5 would always be right
    class_rows = (repo / "metrics/class_scores.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in class_rows] == ["class", *sorted(CLASSES), "macro average",
                                                         "weighted average"]
    roc_classes = {line.split(",")[0] for line in (repo / "metrics/roc.csv").read_text().splitlines()[1:]}
    assert roc_classes == set(CLASSES)


def test_imgclf_unpack_writes_the_packed_test_split_as_folders_to_look_at(repo, tmp_path):
    run(["imgclf", "unpack", "data/resized/test", str(tmp_path / "test")], repo)
    pngs = list((tmp_path / "test").rglob("*.png"))
    assert {png.parent.name for png in pngs} == set(CLASSES) and len(pngs) == 20
    with Image.open(pngs[0]) as image:
        assert image.size == (16, 16) and image.mode == "RGB"


def test_imgclf_predict_in_the_project_runs_the_onnx_model_the_train_stage_wrote(repo):
    image = sorted((repo / "data/raw").rglob("*.png"))[0]
    def predicted_class(*extra: str) -> str:
        output = run(["imgclf", "predict", str(image), *extra], repo).stdout
        line = next(line for line in output.splitlines() if line.startswith(f"{image}: "))
        return line.split(": ")[1].split()[0]

    result = run(["imgclf", "predict", str(image), "--verbose"], repo)
    assert "engine onnx (models/model.onnx)" in result.stdout and "whole command" in result.stdout
    assert predicted_class() == predicted_class("--engine", "keras")


def test_second_repro_runs_no_stage(repo):
    result = run(["dvc", "repro"], repo)
    assert stages_run(result.stdout) == set()
    assert "didn't change" in result.stdout or "up to date" in result.stdout


def test_same_params_give_byte_identical_results(repo):
    models = ("models/model.keras", "models/model.onnx")  # DVC outputs: a changed byte is a new hash in dvc.lock
    before = {path: (repo / path).read_bytes() for path in (*TRACKED_RESULTS, *FIGURES, *models)}
    result = run(["dvc", "repro", "--force"], repo)
    assert stages_run(result.stdout) == ALL_STAGES
    for path, content in before.items():
        assert (repo / path).read_bytes() == content, f"{path} changed on a rerun with the same params"


def declared_plots(repo: Path) -> list[str]:
    """The titles (or image paths) of the top-level plots in dvc.yaml."""
    plots = YAML(typ="safe").load((repo / "dvc.yaml").read_text())["plots"]
    return [plot if isinstance(plot, str) else next(iter(plot)) for plot in plots]


def test_plots_show_renders_training_curves_and_confusion_matrix(repo):
    run(["dvc", "plots", "show", "-o", "dvc_plots"], repo)
    page = (repo / "dvc_plots" / "index.html").read_text()
    for title in declared_plots(repo):
        assert title in page
    assert "cdn.jsdelivr.net" not in page  # the offline template: no network needed to draw
    # one chart per metric carries both splits; each confusion matrix carries every test image
    loss_chart = page[:page.index("vegaEmbed('#Loss'")]
    loss_chart = loss_chart[loss_chart.rindex("var spec"):]
    assert '"filename": "train/loss.tsv"' in loss_chart and '"filename": "val/loss.tsv"' in loss_chart
    assert page.count('"actual": "') == 2 * IMAGES_PER_CLASS * len(CLASSES) // 4


def test_every_declared_plot_renders_in_a_real_browser(repo, tmp_path):
    """`dvc plots show`, opened in headless Chromium with no network: each chart and image is drawn."""
    run(["dvc", "plots", "show", "-o", "dvc_plots"], repo)
    screenshot = tmp_path / "plots.png"
    drawn = render_in_browser(repo / "dvc_plots" / "index.html", screenshot)
    assert drawn["errors"] == []
    charts = {chart["id"]: chart for chart in drawn["charts"]}
    images = {image["src"]: image["width"] for image in drawn["images"]}
    declared = declared_plots(repo)
    assert len(charts) + len(images) == len(declared) == 20
    for title in ("Loss", "Accuracy"):
        assert charts[title]["lines"] >= 2, charts[title]  # train and validation
    for title in ("Confusion_matrix", "Confusion_matrix__normalised_by_actual_class_"):
        assert charts[title]["cells"] >= len(CLASSES), charts[title]
    for title in ("ROC__one_class_vs_the_rest_", "Precision-recall__one_class_vs_the_rest_"):
        assert charts[title]["lines"] >= len(CLASSES), charts[title]  # one curve per class
    assert all(width > 100 for width in images.values()), images
    with Image.open(screenshot) as picture:
        assert picture.size == (1400, 4000)
        assert len(picture.convert("L").getcolors(256 * 256) or []) > 20  # drawn, not a blank page


def test_exp_run_reruns_only_what_depends_on_the_model_and_metrics_diff_shows_it(repo):
    result = run(["dvc", "exp", "run", "-n", "two-epochs", "-S", "train.epochs=2"], repo)
    assert stages_run(result.stdout) == {"train", "evaluate", "export"}

    diff = json.loads(run(["dvc", "metrics", "diff", "--all", "--json"], repo).stdout)
    assert "accuracy" in diff["metrics/evaluate.json"]
    assert "metrics/train.json" not in diff  # the headline figures only (dvc.yaml's metrics)
    record = json.loads(run(["dvc", "metrics", "diff", "--json", "--targets", "metrics/train.json"], repo).stdout)
    assert record["metrics/train.json"]["epochs"] == {"old": 3, "new": 2, "diff": -1}  # shown on request
    table = run(["dvc", "metrics", "diff", "--all"], repo).stdout
    assert re.search(r"metrics/evaluate\.json\s+accuracy", table)

    shown = run(["dvc", "exp", "show", "--no-pager", "--csv"], repo).stdout
    header = shown.splitlines()[0]
    for column in ("train.epochs", "accuracy", "roc_auc", "ece", "macro_f1"):
        assert column in header, column


def test_plots_diff_draws_both_experiments_on_one_chart(repo, tmp_path):
    run(["dvc", "exp", "run", "-n", "four-epochs", "-S", "train.epochs=4"], repo)
    data = json.loads(run(["dvc", "plots", "diff", "two-epochs", "four-epochs", "--json"], repo).stdout)
    (loss_chart,) = data["data"]["Loss"]  # one chart, holding the curves of both
    assert loss_chart["revisions"] == ["two-epochs", "four-epochs"]
    points = loss_chart["content"]["data"]["values"]
    assert {(point["rev"], point["filename"]) for point in points} == {
        (rev, f"{split}/loss.tsv") for rev in ("two-epochs", "four-epochs") for split in ("train", "val")}

    run(["dvc", "plots", "diff", "two-epochs", "four-epochs", "-o", "diff_plots"], repo)
    drawn = render_in_browser(repo / "diff_plots" / "index.html", tmp_path / "diff.png")
    charts = {chart["id"]: chart for chart in drawn["charts"]}
    assert drawn["errors"] == []
    assert charts["Loss"]["lines"] >= 4  # train and validation of each experiment
    assert charts["ROC__one_class_vs_the_rest_"]["lines"] >= 2 * len(CLASSES)


def test_exp_show_of_two_experiments_fits_a_120_column_terminal(repo):
    """After the two experiments above, `dvc exp show --only-changed` in a 120-column terminal shows
    every changed param and metric whole; DVC folds into "…" only the hash of the `models` folder (a
    dependency of the evaluate stage), which `--drop models` leaves out. The metrics files DVC shows
    hold the headline figures: at most 30 in all."""

    def exp_show(*options: str) -> list[str]:
        shown = subprocess.run(["dvc", "exp", "show", "--no-pager", *options], cwd=repo, text=True, check=True,
                               env={**command_env(), "COLUMNS": "120"}, capture_output=True).stdout
        assert "two-epochs" in shown and "four-epochs" in shown, shown
        assert max(len(line) for line in shown.splitlines()) <= 120, shown
        return shown.splitlines()

    declared = YAML(typ="safe").load((repo / "dvc.yaml").read_text())["metrics"]
    figures = {path: flat_figures(json.loads((repo / path).read_text())) for path in declared}
    changed = subprocess.run(["dvc", "exp", "show", "--only-changed", "--csv"], cwd=repo, text=True, check=True,
                             env=command_env(), capture_output=True).stdout.splitlines()[0].split(",")
    shown = [column for column in changed if column.startswith("train.") or any(column in names for names in
                                                                                 figures.values())]
    assert "accuracy" in shown and "train.epochs" in shown, changed
    header = exp_show("--only-changed")[1]
    for column in shown:  # every changed param and metric, whole
        assert f" {column} " in header, (column, header)
    assert "…" not in "\n".join(exp_show("--only-changed", "--drop", "models"))
    assert sum(map(len, figures.values())) <= 30, figures


def test_the_export_stage_reruns_alone_and_checks_its_export(repo):
    result = run(["dvc", "exp", "run", "-n", "exported", "-S", "export.formats=[onnx]"], repo)
    assert stages_run(result.stdout) == {"export"}
    report = json.loads((repo / "metrics/export.json").read_text())
    assert report["onnx"]["max_abs_difference"] < 1e-4 and report["onnx"]["images"] == 20
    assert report["onnx"]["max_abs_difference"] < 1e-4
    assert (repo / "exports/model.onnx").stat().st_size > 1000

"""Every command line of the manual (docs/), run through `bash -c` page after page, in the order of
mkdocs.yml's navigation, as a reader who tries each example would.

The reader has run the pipeline once, as the README starts (tests/test_readme_commands.py runs the
README on the real default, and the README's everyday commands, which docs/experiments.md repeats).
A line the README has, in the reader's own project, runs there and not again here: docs/data.md's
`imgclf recipe photos` line on a folder of photos, the same line on the same kind of folder as the
README's, took 50 s of this test; the lines of person A, person B and "another project" all run.
The manual's examples each change a few params; the project they run in is made small so that each
costs seconds rather than minutes: a folder of small real image files (3 classes) and 2 epochs,
set in its params.yaml; each page starts from that params.yaml. Whatever a line sets with `-S` runs
as written.

Placeholders are real things: `s3://my-bucket` a bucket of moto's S3 server on 127.0.0.1 and
`https://s3.example.com` its endpoint, `<repo URL>` a bare git repository (the team's git server),
`$HOME/Downloads/dogs-vs-cats.zip` an archive in the Kaggle layout in the home folder of the test's
commands, `/data/train` with its CSV a folder of TIFFs named by their id, `/path/to/cifar10` and
`/path/to/flowers` the first images of each class of the real CIFAR-10 and flower photos
(../shared/datasets), `photo.jpg`, `a.jpg`, `b.png` and `my_folder/` image files. Person B's lines
(docs/team.md, "# B") run in a git clone of the project, "another project"'s in an empty folder.
tests/doc_commands.py lists the lines no test runs here, each with its reason.
"""

from __future__ import annotations

import csv
import json
import shutil
import tarfile
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.doc_commands import README, DocLine, doc_lines, manual_pages, unlisted
from tests.helpers import (
    command_env,
    digests,
    extract_cifar10_subset,
    make_project,
    require_shared_dataset,
    run,
    run_line,
    set_params,
    write_dogs_vs_cats_zip,
    write_image_folder,
)
from tests.servers import s3_bucket

pytestmark = pytest.mark.slow

BUCKET = "docs-bucket"
CLASSES = ("red", "green", "blue")


def flowers_subset(destination: Path, per_class: int) -> Path:
    """The first ``per_class`` photos of each class and split of the real flower photos."""
    seen: dict[str, int] = {}
    with tarfile.open(require_shared_dataset("flowers-photos.tar")) as tar:
        members = []
        for member in tar:
            parts = Path(member.name).parts  # flowers/<split>/<class>/<file>.jpg
            if member.isfile() and len(parts) == 4:
                key = f"{parts[1]}/{parts[2]}"
                if seen.get(key, 0) < per_class:
                    seen[key] = seen.get(key, 0) + 1
                    members.append(member)
        tar.extractall(destination, members=members, filter="data")
    return destination / "flowers"


def csv_labelled_folder(root: Path) -> tuple[Path, Path]:
    """A Kaggle-style folder of images named by id without extension in the CSV (TIFFs), and the CSV."""
    images = write_image_folder(root / "by_class", CLASSES, per_class=8)
    folder = root / "train"
    folder.mkdir()
    with open(root / "train_labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "label"])
        for number, path in enumerate(sorted(images.rglob("*.*"))):
            Image.open(path).save(folder / f"{number:04d}.tif")
            writer.writerow([f"{number:04d}", path.parent.name])
    return folder, root / "train_labels.csv"


def in_bash(text: str, cwd: Path, home: Path) -> str:
    """One command line as written, in bash; fail with what it printed when it fails."""
    result = run_line("bash", text, cwd, {**command_env(), "HOME": str(home)})
    if result.returncode != 0:
        pytest.fail(f"bash -c {text!r} (in {cwd.name}/) exited {result.returncode}:\n{result.stdout[-6000:]}")
    return result.stdout


def put_in_images(folder: Path, source: Path) -> None:
    """photo.jpg, a.jpg, b.png and my_folder/ as the manual's examples name them; in a git repository,
    left out of git (docs/team.md's `git add -A` is about the project's files)."""
    if (folder / ".git").is_dir():
        (folder / ".git" / "info" / "exclude").write_text("/photo.jpg\n/a.jpg\n/b.png\n/my_folder/\n")
    shutil.copy2(source / "red" / "001.jpg", folder / "photo.jpg")
    shutil.copy2(source / "green" / "003.jpg", folder / "a.jpg")
    shutil.copy2(source / "blue" / "000.png", folder / "b.png")
    shutil.copytree(source / "blue", folder / "my_folder")


def test_every_command_line_of_the_manual_runs_in_a_real_shell(tmp_path):
    readme = {line.command for line in doc_lines(README)}
    lines = [line for page in manual_pages() for line in unlisted(doc_lines(page))
             if not (line.context == "" and line.command in readme)]
    home = tmp_path / "home"
    write_dogs_vs_cats_zip(home / "Downloads" / "dogs-vs-cats.zip", per_class=12)
    images = write_image_folder(tmp_path / "images", CLASSES, per_class=12)
    csv_folder, labels_csv = csv_labelled_folder(tmp_path / "csv")
    cifar10 = extract_cifar10_subset(tmp_path / "cifar", train_per_class=30, test_per_class=3)  # val 0.04: 1 a class
    flowers = flowers_subset(tmp_path / "flowers", per_class=8)  # test 0.15: 1 a class

    project = make_project(tmp_path / "project", heatmaps=False)
    set_params(project, **{"data.source": "folder", "data.path": str(images), "train.epochs": 2})
    run(["dvc", "repro"], project)  # the reader has run the pipeline once
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "the pipeline, run once"], project)
    origin = tmp_path / "origin.git"  # the team's git server: the project was cloned from it
    run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], tmp_path)
    run(["git", "branch", "-M", "main"], project)
    run(["git", "remote", "add", "origin", str(origin)], project)
    run(["git", "push", "-q", "-u", "origin", "main"], project)
    put_in_images(project, images)
    person_b, consumer = tmp_path / "b", tmp_path / "another-project"

    with s3_bucket(tmp_path, BUCKET) as endpoint:
        placeholders = {
            "s3://my-bucket": f"s3://{BUCKET}", "https://s3.example.com": endpoint, "<repo URL>": str(origin),
            "/data/train_labels.csv": str(labels_csv), "/data/train": str(csv_folder),
            "/path/to/my_photos": str(images), "/path/to/cifar10": str(cifar10), "/path/to/flowers": str(flowers),
        }
        page = ""
        for line in lines:
            if line.page != page:  # each page's examples start from the project as committed
                page = line.page
                run(["git", "checkout", "--", "params.yaml", "dvc.lock"], project)
                run(["dvc", "checkout", "--force"], project)
            if line.context == "B" and not person_b.exists():  # B's clone, as the listed `git clone` line
                run(["git", "clone", "-q", str(origin), str(person_b)], tmp_path)
                put_in_images(person_b, images)
            if line.context == "another project" and not consumer.exists():
                consumer.mkdir()
                put_in_images(consumer, images)
            cwd = {"B": person_b, "another project": consumer}.get(line.context, project)
            text = line.text
            for placeholder, value in placeholders.items():
                text = text.replace(placeholder, value)
            started = time.monotonic()
            output = in_bash(text, cwd, home)
            check_after(line, cwd, output, project)
            print(f"{time.monotonic() - started:6.1f} s  {line.page}: {line.command}")


def check_after(line: DocLine, cwd: Path, output: str, person_a: Path) -> None:
    """What some of the manual's lines promise, seen after they ran (``person_a``: the project)."""
    command = line.command
    if command == "dvc status" and line.context == "B":
        assert "Data and pipelines are up to date" in output, output
    elif command == "dvc pull" and line.context == "B":  # A's results, byte for byte, and nothing to rerun
        assert digests(cwd) == digests(person_a)
    elif command == "dvc exp show" and line.context == "B":
        assert "lr-3e-3" in output, output
    elif command == "dvc exp apply lr-3e-3 && dvc pull":  # the experiment's own model, from the remote
        assert digests(cwd, ("models", "metrics")) == digests(person_a, ("models", "metrics"))
    elif command == "imgclf report --base main --rev lr-3e-3":
        report = (cwd / "report" / "report.md").read_text()
        assert any(row.startswith("| `train.learning_rate` |") for row in report.splitlines()), report
    elif command.startswith("dvc artifacts get") and "--rev" not in command:
        assert (cwd / "models" / "model.keras").is_file()
    elif command.startswith("dvc artifacts get") and "--rev v1.2.0" in command:  # the newest is v1.2.0
        assert digests(cwd / "models-v1.2.0", (".",)) == digests(cwd / "models", (".",))
    elif command == "gto show image-classifier":
        assert "v1.2.0" in output, output
    elif command == "imgclf predict photo.jpg --explain heatmaps/":
        assert (cwd / "heatmaps" / "photo.heatmap.png").is_file()
    elif command.startswith("imgclf export"):
        assert {"onnx", "saved_model", "tflite"} <= set(json.loads((cwd / "exports/report.json").read_text()))
    elif command.startswith("imgclf unpack"):
        assert any((cwd / "test_images").rglob("*.png"))
    elif "data.archive=$HOME/Downloads/dogs-vs-cats.zip" in command:  # 12 cats, 12 dogs, 5 unlabelled
        assert json.loads((cwd / "metrics/data.json").read_text())["images"]["test"] == round(0.15 * 24)
        skipped = (cwd / "metrics/skipped_download.csv").read_text()
        assert sum("/test1/" in row for row in skipped.splitlines()) == 5, skipped  # test1.zip: unlabelled
    elif "data.source=csv" in command:
        assert json.loads((cwd / "metrics/data.json").read_text())["images"]["train"] > 0

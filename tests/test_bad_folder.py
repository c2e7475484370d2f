"""A user's folder holding every bad file of docs/faults.md's table among good images, through the real
`dvc repro` and the real `imgclf predict`: the run finishes, each unusable file is listed with its
reason, each repairable one is in the resized splits (tests/bad_files.py holds the cases).

A unit test of a case is not the promise: the 400-megapixel PNG was "refused before decoding" in
its unit test of the resize code while it crashed `dvc repro` in the download stage.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from tests.bad_files import BadFile, bad_files
from tests.helpers import make_project, run, set_params, write_image_folder

pytestmark = pytest.mark.slow

BAD_CLASS = "red"  # the class folder the bad files are put in
DUPLICATE = "copy_of_000.png"  # the bytes of green/000.png again
EMPTY_CLASS = "birds"


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    images = write_image_folder(tmp_path_factory.mktemp("bad-folder") / "images", ("red", "green", "blue"),
                                per_class=16)
    for bad in bad_files():
        (images / BAD_CLASS / bad.name).write_bytes(bad.content)
    (images / "green" / DUPLICATE).write_bytes((images / "green" / "000.png").read_bytes())
    (images / EMPTY_CLASS).mkdir()
    return images


@pytest.fixture(scope="module")
def project(tmp_path_factory, images) -> Path:
    """The project after `dvc repro` on the folder: it must finish."""
    project = make_project(tmp_path_factory.mktemp("bad-folder-project") / "project", heatmaps=False)
    set_params(project, **{"data.source": "folder", "data.path": str(images), "resize.size": [16, 16],
                           "train.epochs": 2, "train.batch_size": 16, "split.val": 0.25, "split.test": 0.25})
    run(["dvc", "repro"], project)
    return project


def raw_path(bad: BadFile) -> str:
    return f"data/raw/{BAD_CLASS}/{bad.name}"


def test_every_file_that_is_no_image_is_listed_by_the_download_stage(project):
    listed = {Path(row["file"]).name: row["reason"] for row in read_rows(project / "metrics/skipped_download.csv")}
    for bad in bad_files():
        if bad.stage == "download":
            assert bad.reason in listed.get(bad.name, ""), (bad.name, listed)
        else:
            assert bad.name not in listed, (bad.name, listed[bad.name])
    assert listed[EMPTY_CLASS] == "empty class folder: no images, so no class"


def test_every_image_that_could_not_be_used_as_it_is_is_listed_by_the_resize_stage(project):
    listed = {row["file"]: row for row in read_rows(project / "metrics/skipped_resize.csv")}
    for bad in bad_files():
        if bad.stage == "resize":
            row = listed.get(raw_path(bad))
            assert row is not None, f"{bad.name} is not in skipped_resize.csv: {sorted(listed)}"
            assert (row["action"], bad.reason in row["reason"]) == (bad.action, True), (bad.name, row)
        else:
            assert raw_path(bad) not in listed, (bad.name, listed[raw_path(bad)])


def test_every_usable_file_is_in_the_resized_splits_and_no_unusable_one(project):
    packed: set[str] = set()
    for subset in ("train", "val", "test"):
        packed |= set(np.load(project / f"data/resized/{subset}/files.npy", allow_pickle=False).tolist())
    for bad in bad_files():
        assert (raw_path(bad) in packed) == bad.usable, bad.name
    assert len([name for name in packed if name.startswith(f"data/raw/{BAD_CLASS}/")]) == 16 + sum(
        bad.usable for bad in bad_files())


def test_the_duplicate_is_dropped_and_listed(project):
    (row,) = read_rows(project / "metrics/duplicates.csv")
    assert {Path(row["file"]).name, Path(row["duplicate_of"]).name} == {DUPLICATE, "000.png"}
    assert row["action"] == "dropped: the same bytes"


def test_imgclf_predict_on_the_folder_classifies_every_usable_file_and_names_the_others(project, images, tmp_path):
    output = tmp_path / "predictions.csv"
    run(["imgclf", "predict", str(images / BAD_CLASS), "--output", str(output)], project)
    rows = {Path(row["file"]).name: row for row in read_rows(output)}
    for bad in bad_files():
        if bad.name.startswith("."):
            assert bad.name not in rows  # hidden files are left out, as docs/results.md says of imgclf predict
            continue
        row = rows[bad.name]
        if bad.usable:
            assert row["error"] == "" and row["predicted"] in ("red", "green", "blue"), row
        else:
            assert row["error"] and row["predicted"] == "", row
    assert rows["bomb.png"]["error"].endswith("refused before decoding")
    assert len(rows) == 16 + sum(not bad.name.startswith(".") for bad in bad_files())

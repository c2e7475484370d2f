"""The pipeline on real photographs: a CI-sized subset of CIFAR-10 from ../shared/datasets.

Skips when the data is absent; fails instead when REQUIRE_REAL_DATA=1 (CI sets it).
"""

from __future__ import annotations

import json

import pytest

from tests.helpers import extract_cifar10_subset, make_project, run, set_params

pytestmark = [pytest.mark.slow, pytest.mark.real_data]

TRAIN_PER_CLASS = 300
TEST_PER_CLASS = 100


def test_cifar10_as_a_folder_source_keeps_its_test_split_and_learns(tmp_path):
    images = extract_cifar10_subset(tmp_path / "cifar", TRAIN_PER_CLASS, TEST_PER_CLASS)
    project = make_project(tmp_path / "project", heatmaps=False)
    set_params(project, **{"data.source": "folder", "data.path": str(images), "train.epochs": 8,
                           "train.batch_size": 64})
    run(["dvc", "repro"], project)

    counts = json.loads((project / "metrics/data.json").read_text())
    assert counts["images"]["test"] == 10 * TEST_PER_CLASS  # the source's own test split, untouched
    balance = [line.split(",") for line in (project / "metrics/data/class_balance.csv").read_text().splitlines()]
    assert {int(images) for split, _, images in balance[1:] if split == "test"} == {TEST_PER_CLASS}
    assert counts["images"]["val"] == round(0.15 * 10 * TRAIN_PER_CLASS)  # carved from its training part
    accuracy = json.loads((project / "metrics/evaluate.json").read_text())["accuracy"]
    assert accuracy > 0.30, f"test accuracy {accuracy} on 10 classes: chance is 0.10"

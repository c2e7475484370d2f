"""What the data is: the resize stage's counts of the source images, with known answers."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from imgclf.data.images import SourceImage
from imgclf.data.stats import SourceStatistics, aspect_bin
from tests.helpers import make_project, run, set_params


def test_aspect_ratios_are_named_by_the_nearest_shape():
    assert aspect_bin(100, 100) == "1:1" and aspect_bin(1920, 1080) == "16:9" and aspect_bin(3000, 4000) == "3:4"
    assert aspect_bin(30, 60) == "1:2" and aspect_bin(10, 1000) == "1:3"  # beyond the last bin: the last


def test_source_statistics_count_orientation_enlargement_and_modes():
    stats = SourceStatistics((32, 32))
    for image in (SourceImage(64, 48, "RGB"), SourceImage(48, 64, "RGB"), SourceImage(16, 16, "L")):
        stats.add(image)
    assert stats.summary() == {"enlarged": 1, "shrunk_or_kept": 2, "portrait": 1, "landscape": 1, "square": 1,
                               "modes": {"L": 1, "RGB": 2}}


@pytest.mark.slow
def test_the_resize_stage_reports_sizes_orientation_and_enlarged_images(tmp_path):
    images = tmp_path / "images"
    rng = np.random.default_rng(0)
    shapes = {"portrait": (60, 30), "landscape": (30, 60), "tiny": (8, 8)}  # (height, width)
    for label, (height, width) in shapes.items():
        (images / label).mkdir(parents=True)
        for number in range(10):
            pixels = rng.integers(0, 255, size=(height, width), dtype=np.uint8)
            Image.fromarray(pixels, mode="L" if label == "tiny" else None).convert(
                "L" if label == "tiny" else "RGB").save(images / label / f"{number}.png")
    project = make_project(tmp_path / "project", heatmaps=False)
    set_params(project, **{"data.source": "folder", "data.path": str(images), "resize.size": [16, 16]})

    run(["dvc", "repro", "resize"], project)

    with open(project / "metrics/data/splits.csv", newline="") as handle:
        splits = list(csv.DictReader(handle))
    assert [split["split"] for split in splits] == ["train", "val", "test"]
    total = {key: sum(int(split[key]) for split in splits) for key in ("enlarged", "portrait", "landscape", "square")}
    assert total == {"enlarged": 10, "portrait": 10, "landscape": 10, "square": 10}
    modes = [dict(mode.split() for mode in split["modes"].split("; ")) for split in splits]
    assert sum(int(split_modes.get("L", 0)) for split_modes in modes) == 10
    with open(project / "metrics/data/source_sizes.csv", newline="") as handle:
        sizes = {(int(row["width"]), int(row["height"])) for row in csv.DictReader(handle)}
    assert sizes == {(30, 60), (60, 30), (8, 8)}
    with open(project / "metrics/data/aspect_ratios.csv", newline="") as handle:
        ratios = {row["aspect_ratio"].split()[0] for row in csv.DictReader(handle) if int(row["images"])}
    assert ratios == {"1:2", "2:1", "1:1"}
    assert (project / "metrics/figures/resize/data.png").stat().st_size > 10_000

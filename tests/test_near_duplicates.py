"""Near-duplicates: the same picture re-encoded or resized is found by its perceptual hash, an
unrelated or a flat picture is not; and the split stage drops such a copy as it drops byte copies."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgclf.data.near_duplicates import group_keys, hash_distance, hash_files, near_pairs
from tests.helpers import make_project, run, set_params, write_image_folder


def picture(seed: int, side: int = 240) -> Image.Image:
    """A photo-like picture: smooth blobs of colour and edges, different for each seed."""
    rng = np.random.default_rng(seed)
    rows, columns = np.indices((side, side)) / side
    channels = []
    for _ in range(3):
        centre, width = rng.uniform(0.2, 0.8, 2), rng.uniform(0.1, 0.4)
        blob = np.exp(-((rows - centre[0]) ** 2 + (columns - centre[1]) ** 2) / width ** 2)
        stripes = np.sin(rng.uniform(4, 12) * (rows * rng.uniform(-1, 1) + columns))
        channels.append(120 * blob + 60 * stripes + 70)
    return Image.fromarray(np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.uint8))


def save(image: Image.Image, path: Path, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)
    return path


def test_reencoded_and_resized_copies_are_close_and_other_pictures_far(tmp_path):
    original = picture(0)
    files = [save(original, tmp_path / "original.png"),
             save(original, tmp_path / "recompressed.jpg", quality=60),
             save(original.resize((100, 100)), tmp_path / "smaller.png"),
             save(picture(1), tmp_path / "other.png"),
             save(Image.new("RGB", (50, 50), (20, 200, 40)), tmp_path / "flat_green.png"),
             save(Image.new("RGB", (50, 50), (200, 20, 40)), tmp_path / "flat_red.png")]
    hashes = hash_files(files, workers=1)
    first, recompressed, smaller, other, flat_green, flat_red = hashes
    assert first is not None and recompressed is not None and smaller is not None and other is not None
    assert hash_distance(first, recompressed) <= 8 and hash_distance(first, smaller) <= 8  # 3 and 3 here
    assert hash_distance(first, other) > 64  # 114 here, of 256
    assert flat_green is None and flat_red is None  # flat: never matched, whatever their colours
    assert {(first, second) for first, second, _ in near_pairs(hashes, 8)} == {(0, 1), (0, 2), (1, 2)}


def test_groups_join_byte_copies_and_near_pairs():
    paths = [Path(name) for name in ("a", "b", "c", "d")]
    digests = {Path("a"): "1", Path("b"): "2", Path("c"): "1", Path("d"): "4"}
    keys = group_keys(paths, digests, [(1, 2, 3)])  # b is near c, c has a's bytes
    assert keys == {Path("a"): "1", Path("b"): "1", Path("c"): "1", Path("d"): "4"}


@pytest.mark.slow
def test_the_split_stage_drops_a_resized_copy_of_a_picture(tmp_path):
    images = write_image_folder(tmp_path / "images", ("red", "green"), per_class=6)
    save(picture(7), images / "red" / "photo.png")
    buffer = io.BytesIO()
    picture(7).resize((120, 120)).save(buffer, format="JPEG", quality=80)
    (images / "green" / "photo_again.jpg").write_bytes(buffer.getvalue())
    project = make_project(tmp_path / "project", heatmaps=False)
    set_params(project, **{"data.source": "folder", "data.path": str(images)})

    run(["dvc", "repro", "split"], project)

    with open(project / "metrics/duplicates.csv", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert {Path(row["file"]).name, Path(row["duplicate_of"]).name} == {"photo.png", "photo_again.jpg"}
    assert row["action"] == "dropped: the same picture (perceptual hash)"

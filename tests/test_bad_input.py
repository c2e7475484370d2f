"""What the project promises for dirty image folders: every bad file is skipped or repaired, and
always counted and listed with its reason. Each test builds its bad input itself.

The download stage recognises images by content (`import_files`); the resize stage decodes them
(`resize_file`). These tests call exactly those functions; tests/test_bad_folder.py runs every one
of these files (tests/bad_files.py) through the real `dvc repro` and `imgclf predict`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from imgclf.data.images import ResizeJob, resize_file
from imgclf.data.layout import LabelledFile, scan_folder
from imgclf.data.manifest import read_manifest
from imgclf.data.sources import import_files
from imgclf.data.split import SplitError, drop_duplicates, leaks, split_items
from tests import bad_files
from tests.bad_files import encoded

SIZE = (16, 16)
MAX_PIXELS = 200e6


def resize(tmp_path: Path, name: str, content: bytes, mode: str = "stretch"):
    source = tmp_path / name
    source.write_bytes(content)
    return resize_file(ResizeJob(source), SIZE, mode, MAX_PIXELS)


def assert_rgb_output(pixels: np.ndarray | None) -> np.ndarray:
    assert pixels is not None and pixels.dtype == np.uint8 and pixels.shape == (*SIZE, 3)
    return pixels


# --- files that are no image: the download stage lists them ------------------------------------

@pytest.mark.parametrize("bad", [bad for bad in bad_files.bad_files() if bad.stage == "download"],
                         ids=lambda bad: bad.name)
def test_a_file_that_is_no_image_is_listed_with_its_reason(tmp_path, bad):
    name, content = bad.name, bad.content
    source = tmp_path / "source"
    for label in ("cats", "dogs"):
        (source / label).mkdir(parents=True)
        (source / label / "good.png").write_bytes(encoded(Image.new("RGB", (8, 8)), "PNG"))
    (source / "cats" / name).write_bytes(content)
    skipped = import_files(*scan_folder(source), tmp_path / "raw", source)
    assert [(item.path.name, item.reason.split(":")[0]) for item in skipped] == [(name, "not an image")]
    assert not (tmp_path / "raw" / "cats" / name).exists()


def test_an_empty_class_folder_is_listed(tmp_path):
    for label in ("cats", "dogs"):
        (tmp_path / label).mkdir()
        (tmp_path / label / "a.png").write_bytes(encoded(Image.new("RGB", (8, 8)), "PNG"))
    (tmp_path / "birds").mkdir()
    _, skipped = scan_folder(tmp_path)
    assert [(item.path.name, item.reason) for item in skipped] == [
        ("birds", "empty class folder: no images, so no class")]


# --- images that cannot be decoded: skipped with the reason --------------------------------------

def test_a_truncated_jpeg_is_skipped(tmp_path):
    outcome, pixels = resize(tmp_path, "cut.jpg", bad_files.truncated_jpeg())
    assert outcome.action == "skipped" and "truncated" in outcome.reason.lower()
    assert pixels is None


def test_a_header_claiming_400_megapixels_is_refused_before_decoding(tmp_path):
    outcome, _ = resize(tmp_path, "bomb.png", bad_files.png_claiming_400_megapixels())
    assert outcome.action == "skipped"
    assert "400 megapixels, over resize.max_megapixels (200); refused before decoding" in outcome.reason


def test_a_header_over_pillows_own_limit_is_an_image_to_the_download_stage(tmp_path):
    """Pillow refuses to open more than 179 megapixels; the download stage only asks what a file is."""
    for label in ("cats", "dogs"):
        (tmp_path / "source" / label).mkdir(parents=True)
        (tmp_path / "source" / label / "good.png").write_bytes(encoded(Image.new("RGB", (8, 8)), "PNG"))
    (tmp_path / "source" / "cats" / "panorama.png").write_bytes(bad_files.png_claiming_400_megapixels())
    skipped = import_files(*scan_folder(tmp_path / "source"), tmp_path / "raw", tmp_path / "source")
    assert skipped == []
    assert (tmp_path / "raw" / "cats" / "panorama.png").is_file()  # the resize stage decides, and lists it


# --- damaged but usable: used, and listed with a warning -----------------------------------------

def test_a_jpeg_with_junk_before_its_end_marker_loads_with_a_warning(tmp_path):
    outcome, pixels = resize(tmp_path, "junk.jpg", bad_files.jpeg_with_junk_before_its_end_marker())
    assert outcome.action == "warning"
    assert "extraneous bytes before marker 0xd9" in outcome.reason
    assert_rgb_output(pixels)


def test_an_exif_only_jpeg_without_jfif_marker_is_kept(tmp_path):
    exif_only = bad_files.exif_only_jpeg()
    assert b"JFIF" not in exif_only and b"Exif" in exif_only
    outcome, pixels = resize(tmp_path, "exif_only.jpg", exif_only)
    assert outcome.action == "used"  # keras-io's JFIF filter would have dropped it
    assert_rgb_output(pixels)


# --- unusual but valid: decoded by content, repaired where needed, listed when repaired ----------

@pytest.mark.parametrize("image_format", ["PNG", "BMP"])
def test_a_png_or_bmp_named_jpg_is_decoded_by_content(tmp_path, image_format):
    outcome, pixels = resize(tmp_path, "photo.jpg", encoded(Image.new("RGB", (20, 20), (0, 0, 255)), image_format))
    assert outcome.action == "used"
    assert assert_rgb_output(pixels)[8, 8].tolist() == [0, 0, 255]


def test_a_cmyk_jpeg_is_converted_and_listed(tmp_path):
    outcome, pixels = resize(tmp_path, "print.jpg", bad_files.cmyk_jpeg())
    assert (outcome.action, outcome.reason) == ("repaired", "CMYK converted to RGB")
    red, green, blue = assert_rgb_output(pixels)[8, 8].tolist()
    assert red > 200 and green < 50 and blue < 50


def test_a_16_bit_png_is_scaled_to_8_bits_not_clipped_to_white(tmp_path):
    outcome, pixels = resize(tmp_path, "deep.png", bad_files.png_16_bit())
    assert (outcome.action, outcome.reason) == ("repaired", "I;16 pixels scaled to 8 bits")
    assert assert_rgb_output(pixels)[8, 8].tolist() == [128, 128, 128]


@pytest.mark.parametrize("kind", ["rgba", "palette"])
def test_transparency_is_composited_on_a_fixed_background_and_listed(tmp_path, kind):
    content = bad_files.rgba_png() if kind == "rgba" else bad_files.palette_png_with_transparency()
    outcome, pixels = resize(tmp_path, f"{kind}.png", content)
    assert (outcome.action, outcome.reason) == ("repaired", "transparency composited on white")
    assert assert_rgb_output(pixels)[8, 8].tolist() == [255, 255, 255]


def test_grayscale_becomes_rgb(tmp_path):
    outcome, pixels = resize(tmp_path, "grey.png", encoded(Image.new("L", (20, 20), 90), "PNG"))
    assert outcome.action == "used"
    assert assert_rgb_output(pixels)[8, 8].tolist() == [90, 90, 90]


def test_exif_orientation_6_is_applied_before_resizing(tmp_path):
    outcome, pixels = resize(tmp_path, "rotated.jpg", bad_files.exif_rotated_jpeg(), mode="pad")
    assert outcome.action == "used"
    pixels = assert_rgb_output(pixels)
    assert pixels[4, 8].mean() > 200 and pixels[12, 8].mean() < 50  # top white, bottom black


def test_an_animated_gif_gives_its_first_frame_and_is_listed(tmp_path):
    outcome, pixels = resize(tmp_path, "animated.gif", bad_files.animated_gif())
    assert (outcome.action, outcome.reason) == ("repaired", "animated (3 frames): the first frame is used")
    assert assert_rgb_output(pixels)[8, 8].tolist() == [255, 0, 0]


@pytest.mark.skipif(not features.check("webp"), reason="this Pillow has no WebP support")
def test_webp_is_decoded(tmp_path):
    outcome, pixels = resize(tmp_path, "photo.webp", bad_files.webp())
    assert outcome.action == "used"
    assert assert_rgb_output(pixels)[8, 8].tolist() == [0, 200, 0]


# --- datasets that cannot be split as asked: an error before training ------------------------------

def test_a_dataset_with_one_class_stops_before_training(tmp_path):
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "a.png").write_bytes(encoded(Image.new("RGB", (8, 8)), "PNG"))
    with pytest.raises(ValueError, match=r"found 1 class \(cats\).*at least two class folders"):
        import_files(*scan_folder(tmp_path), tmp_path / "raw", tmp_path)


def test_a_class_too_small_for_the_split_is_named_with_its_count():
    items = [LabelledFile(Path(f"/{label}/{i}.png"), label, None, f"{i}.png")
             for label, count in (("common", 30), ("rare", 1)) for i in range(count)]
    with pytest.raises(SplitError, match=r"class 'rare' has 1 image"):
        split_items(items, 0.2, 0.2, seed=0)


def test_the_same_image_in_two_splits_is_found_by_content_and_dropped_or_reported():
    train = [LabelledFile(Path(f"/train/cat/{i}.png"), "cat", "train", f"{i}.png") for i in range(4)]
    test = [LabelledFile(Path("/test/cat/copy.png"), "cat", "test", "copy.png")]
    digests = {item.path: f"digest{i}" for i, item in enumerate(train)} | {test[0].path: "digest2"}

    kept, dropped = drop_duplicates(train + test, digests)  # split.deduplicate: true
    assert [(copy.path.name, original.path.name) for copy, original in dropped] == [("2.png", "copy.png")]
    assert test[0] in kept  # the source's test copy is the one kept

    split = {"train": train, "val": [], "test": test}  # split.deduplicate: false
    assert [(item.path.name, copy.path.name, subset) for item, copy, subset in leaks(split, digests)] == \
        [("2.png", "copy.png", "test")]


@pytest.mark.parametrize("deduplicate", [True, False])
def test_the_split_stage_finds_a_copy_across_the_sources_splits_by_its_bytes(tmp_path, deduplicate):
    from tests.helpers import make_project, run, set_params

    images = tmp_path / "images"
    for subset, count in (("train", 10), ("test", 2)):
        for label, colour in (("cat", (200, 0, 0)), ("dog", (0, 0, 200))):
            folder = images / subset / label
            folder.mkdir(parents=True)
            for number in range(count):
                Image.new("RGB", (8, 8), (colour[0], number * 10 + (subset == "test") * 5, colour[2])).save(
                    folder / f"{number}.png")
    (images / "train/cat/copy_of_test.png").write_bytes((images / "test/cat/0.png").read_bytes())
    project = make_project(tmp_path / "project", heatmaps=False)
    set_params(project, **{"split.deduplicate": deduplicate, "data.source": "folder", "data.path": str(images)})

    run(["dvc", "repro", "split"], project)

    report = (project / "metrics/duplicates.csv").read_text().splitlines()
    assert report[0] == "file,duplicate_of,action"
    in_split = [Path(entry.file).name for entry in read_manifest(project / "data/split.csv", "split")
                if entry.file.endswith("copy_of_test.png")]
    if deduplicate:
        assert report[1:] == ["data/raw/train/cat/copy_of_test.png,data/raw/test/cat/0.png,dropped: the same bytes"]
        assert in_split == []  # the test image is kept, its training copy dropped
    else:
        assert len(report) == 2 and report[1].endswith("leakage: the same bytes in test")
        assert in_split == ["copy_of_test.png"]

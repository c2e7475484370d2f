from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgclf.data.layout import SourceError, scan_folder
from imgclf.data.sources import digits_images, import_folder, write_digits


def touch_image(path: Path, colour=(200, 10, 10), image_format="PNG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (6, 6), colour).save(path, format=image_format)
    return path


def labels_by_subset(files):
    return sorted((item.subset, item.label, item.name) for item in files)


def test_flat_class_folders(tmp_path):
    touch_image(tmp_path / "cats" / "a.png")
    touch_image(tmp_path / "dogs" / "b.png")
    files, skipped = scan_folder(tmp_path)
    assert labels_by_subset(files) == [(None, "cats", "a.png"), (None, "dogs", "b.png")]
    assert skipped == []


def test_class_folders_at_any_depth_and_nested_files(tmp_path):
    root = tmp_path / "download" / "dataset"
    touch_image(root / "cats" / "2019" / "a.png")
    touch_image(root / "cats" / "a.png")
    touch_image(root / "dogs" / "b.png")
    files, _ = scan_folder(tmp_path / "download")
    assert labels_by_subset(files) == [(None, "cats", "2019__a.png"), (None, "cats", "a.png"),
                                       (None, "dogs", "b.png")]


@pytest.mark.parametrize(("train_name", "test_name"), [("train", "test"), ("training_set", "test_set"),
                                                       ("Training", "Testing")])
def test_a_sources_own_split_is_recognised(tmp_path, train_name, test_name):
    # the Kaggle cats-and-dogs layout nests each split folder once more
    touch_image(tmp_path / train_name / train_name / "cats" / "a.png")
    touch_image(tmp_path / train_name / train_name / "dogs" / "b.png")
    touch_image(tmp_path / test_name / "cats" / "c.png")
    files, _ = scan_folder(tmp_path)
    assert labels_by_subset(files) == [("test", "cats", "c.png"), ("train", "cats", "a.png"),
                                       ("train", "dogs", "b.png")]


def test_files_outside_class_folders_are_skipped_with_a_reason(tmp_path):
    touch_image(tmp_path / "cats" / "a.png")
    touch_image(tmp_path / "dogs" / "b.png")
    (tmp_path / "README.txt").write_text("about this dataset")
    touch_image(tmp_path / "__MACOSX" / "cats" / "._a.png")
    files, skipped = scan_folder(tmp_path)
    assert len(files) == 2
    reasons = {path.name: reason for path, reason in ((s.path, s.reason) for s in skipped)}
    assert reasons["README.txt"] == "not inside a class folder"
    assert "__MACOSX" in reasons["._a.png"]


def test_two_folders_for_one_split_is_an_error(tmp_path):
    touch_image(tmp_path / "train" / "cats" / "a.png")
    touch_image(tmp_path / "val" / "cats" / "b.png")
    touch_image(tmp_path / "validation" / "cats" / "c.png")
    with pytest.raises(SourceError, match="two folders for the val split"):
        scan_folder(tmp_path)


def test_missing_folder_names_the_param(tmp_path):
    with pytest.raises(SourceError, match="data.path"):
        scan_folder(tmp_path / "nowhere")


def test_import_recognises_images_by_content_and_reports_the_rest(tmp_path):
    source = tmp_path / "source"
    touch_image(source / "cats" / "photo.jpg", image_format="PNG")  # a PNG named .jpg
    touch_image(source / "cats" / "no_extension", image_format="JPEG")
    touch_image(source / "dogs" / "d.bmp", image_format="BMP")
    (source / "dogs" / "notes.jpg").write_text("not an image")
    (source / "dogs" / "empty.png").write_bytes(b"")
    (source / "dogs" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0" + bytes(60))
    destination = tmp_path / "raw"

    skipped = import_folder(source, destination)

    imported = sorted(str(path.relative_to(destination)) for path in destination.rglob("*") if path.is_file())
    assert imported == ["cats/no_extension", "cats/photo.jpg", "dogs/d.bmp"]
    assert sorted(item.path.name for item in skipped) == ["Thumbs.db", "empty.png", "notes.jpg"]
    assert all(item.reason.startswith("not an image") for item in skipped)


def test_import_keeps_the_sources_split(tmp_path):
    source = tmp_path / "source"
    for subset in ("train", "test"):
        touch_image(source / subset / "cats" / "a.png")
        touch_image(source / subset / "dogs" / "b.png")
    import_folder(source, tmp_path / "raw")
    files, _ = scan_folder(tmp_path / "raw")
    assert labels_by_subset(files) == [("test", "cats", "a.png"), ("test", "dogs", "b.png"),
                                       ("train", "cats", "a.png"), ("train", "dogs", "b.png")]


def test_a_single_class_is_an_error_before_anything_is_written(tmp_path):
    touch_image(tmp_path / "source" / "cats" / "a.png")
    with pytest.raises(SourceError, match=r"found 1 class \(cats\).*at least two class folders"):
        import_folder(tmp_path / "source", tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_digits_are_the_real_scikit_learn_digits():
    images, labels = digits_images()
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8
    assert images.max() == 255 and images.min() == 0
    assert sorted(set(labels.tolist())) == list(range(10))


def test_write_digits_writes_class_folders(tmp_path):
    assert write_digits(tmp_path) == 1797
    files, _ = scan_folder(tmp_path)
    assert len(files) == 1797
    assert sorted({item.label for item in files}) == [str(digit) for digit in range(10)]
    with Image.open(files[0].path) as image:
        assert image.size == (8, 8) and image.mode == "L"

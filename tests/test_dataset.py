import numpy as np
import pytest
from PIL import Image

from imgclf.dataset import ImageSet, load_image_set, save_image_set, write_image_folder
from imgclf.errors import PipelineError


def packed(tmp_path, labels, class_names, files=None):
    images = np.stack([np.full((4, 4, 3), 10 * index, np.uint8) for index in range(len(labels))])
    files = files or tuple(f"{class_names[label]}/{index}.jpg" for index, label in enumerate(labels))
    path = tmp_path / "split.npz"
    save_image_set(path, ImageSet(images, np.asarray(labels, np.int32), files, tuple(class_names)))
    return path


def test_a_packed_split_loads_back_as_written(tmp_path):
    path = packed(tmp_path, [0, 1, 1], ("cat", "dog"))
    loaded = load_image_set(path)
    assert loaded.class_names == ("cat", "dog") and loaded.labels.tolist() == [0, 1, 1]
    assert loaded.files == ("cat/0.jpg", "dog/1.jpg", "dog/2.jpg")
    assert loaded.images.dtype == np.uint8 and loaded.images[2, 0, 0].tolist() == [20, 20, 20]
    with np.load(path, allow_pickle=False) as raw:  # plain arrays only: it loads without pickle
        assert sorted(raw.files) == ["class_names", "files", "images", "labels"]


def test_a_packed_split_names_only_the_classes_it_has_unless_told_the_models_classes(tmp_path):
    path = packed(tmp_path, [1, 1], ("ant", "bee", "cat"))
    assert load_image_set(path).class_names == ("bee",) and load_image_set(path).labels.tolist() == [0, 0]
    assert load_image_set(path, ["ant", "bee", "cat"]).labels.tolist() == [1, 1]
    with pytest.raises(PipelineError, match="not trained on: bee"):
        load_image_set(path, ["ant", "cat"])


def test_a_missing_or_empty_packed_split_says_what_to_do(tmp_path):
    with pytest.raises(PipelineError, match="does not exist: run the resize stage first"):
        load_image_set(tmp_path / "nowhere.npz")
    path = tmp_path / "empty.npz"
    save_image_set(path, ImageSet(np.zeros((0, 4, 4, 3), np.uint8), np.zeros(0, np.int32), (), ("a",)))
    with pytest.raises(PipelineError, match="no images in .*empty.npz.*skipped_resize.csv"):
        load_image_set(path)


def test_unpack_writes_class_folders_of_pngs_and_keeps_names_apart(tmp_path):
    path = packed(tmp_path, [0, 0, 1], ("cat", "dog"), files=("train/cat/1.jpg", "test/cat/1.png", "dog/x.y.jpg"))
    assert write_image_folder(load_image_set(path), tmp_path / "out") == 3
    written = sorted(str(file.relative_to(tmp_path / "out")) for file in (tmp_path / "out").rglob("*.png"))
    assert written == ["cat/1.png", "cat/test__cat__1_png.png", "dog/x.y.png"]
    with Image.open(tmp_path / "out/cat/test__cat__1_png.png") as image:
        assert image.size == (4, 4) and np.asarray(image)[0, 0].tolist() == [10, 10, 10]
    with pytest.raises(PipelineError, match="already exists"):
        write_image_folder(load_image_set(path), tmp_path / "out")

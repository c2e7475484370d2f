import numpy as np
import pytest
from PIL import Image

from imgclf.dataset import load_image_folder


def write(path, colour, size=(4, 4)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def test_loads_images_labels_and_files_in_class_order(tmp_path):
    write(tmp_path / "b" / "1.png", (0, 0, 255))
    write(tmp_path / "a" / "2.png", (255, 0, 0))
    write(tmp_path / "a" / "1.png", (250, 0, 0))
    loaded = load_image_folder(tmp_path)
    assert loaded.class_names == ("a", "b")
    assert loaded.files == ("a/1.png", "a/2.png", "b/1.png")
    assert loaded.labels.tolist() == [0, 0, 1]
    assert loaded.images.shape == (3, 4, 4, 3) and loaded.images.dtype == np.uint8
    assert loaded.images[2, 0, 0].tolist() == [0, 0, 255]


def test_given_class_names_fix_the_label_indices_even_when_a_class_is_missing(tmp_path):
    write(tmp_path / "b" / "1.png", (0, 0, 255))
    loaded = load_image_folder(tmp_path, ["a", "b"])
    assert loaded.labels.tolist() == [1]


def test_a_class_unknown_to_the_model_is_an_error(tmp_path):
    write(tmp_path / "zebra" / "1.png", (0, 0, 0))
    with pytest.raises(ValueError, match="not trained on: zebra"):
        load_image_folder(tmp_path, ["a", "b"])


def test_images_of_different_sizes_ask_for_a_resize(tmp_path):
    write(tmp_path / "a" / "1.png", (0, 0, 0), (4, 4))
    write(tmp_path / "a" / "2.png", (0, 0, 0), (5, 4))
    with pytest.raises(ValueError, match="rerun the resize stage"):
        load_image_folder(tmp_path)

"""Split folders: shards written as images come, read back exactly, in any order, a batch at a time."""

import json

import numpy as np
import pytest
from PIL import Image

from imgclf.data.dataset import (
    ImageSet,
    ShardWriter,
    load_image_set,
    open_split,
    save_image_set,
    shard_name,
    write_image_folder,
)
from imgclf.plumbing.errors import PipelineError


def packed(tmp_path, labels, class_names, files=None, shard_bytes=2**20):
    images = np.stack([np.full((4, 4, 3), 10 * index, np.uint8) for index in range(len(labels))])
    files = files or tuple(f"{class_names[label]}/{index}.jpg" for index, label in enumerate(labels))
    path = tmp_path / "split"
    save_image_set(path, ImageSet(images, np.asarray(labels, np.int32), files, tuple(class_names)), shard_bytes)
    return path


def random_set(count, seed=0, side=5):
    rng = np.random.default_rng(seed)
    return ImageSet(rng.integers(0, 256, size=(count, side, side, 3), dtype=np.uint8),
                    rng.integers(0, 3, size=count).astype(np.int32),
                    tuple(f"folder {index % 7}/image ü{index}.jpg" for index in range(count)), ("a", "b", "c"))


def test_shards_round_trip_pixels_labels_and_paths_exactly(tmp_path):
    written = random_set(103)
    save_image_set(tmp_path / "split", written, shard_bytes=10 * 5 * 5 * 3)  # 10 images a shard
    shards = sorted(path.name for path in (tmp_path / "split").glob("images-*.npy"))
    assert shards == [shard_name(index) for index in range(11)]
    index = json.loads((tmp_path / "split/split.json").read_text())
    assert index["images"] == 103 and [shard["images"] for shard in index["shards"]] == [10] * 10 + [3]
    read = load_image_set(tmp_path / "split")
    np.testing.assert_array_equal(read.images, written.images)
    assert read.labels.tolist() == written.labels.tolist() and read.files == written.files
    assert read.class_names == written.class_names
    with open_split(tmp_path / "split") as split:  # any order, across shard boundaries, with repeats
        rows = np.random.default_rng(1).permutation(103)[:40].tolist() + [9, 10, 9, 102, 0]
        np.testing.assert_array_equal(split.read(np.asarray(rows)), written.images[rows])
        np.testing.assert_array_equal(np.concatenate(list(split.blocks(16))), written.images)
        assert split.read(np.arange(0)).shape == (0, 5, 5, 3)
        with pytest.raises(IndexError):
            split.read(np.asarray([103]))
    # each shard is a plain .npy: NumPy opens it without this project, and without pickle
    np.testing.assert_array_equal(np.load(tmp_path / "split" / shard_name(10), allow_pickle=False),
                                  written.images[100:])


def test_one_shard_or_many_give_the_same_split_and_digest(tmp_path):
    written = random_set(50)
    save_image_set(tmp_path / "many", written, shard_bytes=75 * 7)
    save_image_set(tmp_path / "one", written)
    with open_split(tmp_path / "many") as many, open_split(tmp_path / "one") as one:
        np.testing.assert_array_equal(many.read(np.arange(50)), one.read(np.arange(50)))
        assert many.digest != one.digest  # the digest names the layout too; the training fingerprint sees both
    assert written.digest == ImageSet(written.images.copy(), written.labels, written.files, written.class_names).digest


def test_the_writer_writes_each_image_to_disk_as_it_comes(tmp_path):
    writer = ShardWriter(tmp_path / "split", (2, 2, 3), ("x",), shard_bytes=3 * 12)
    for index in range(7):
        writer.add(np.full((2, 2, 3), index, np.uint8), 0, f"{index}.png")
        shards = sorted((tmp_path / "split").glob("images-*.npy"))
        assert len(shards) == index // 3 + 1  # a shard is opened with its first image
        assert all(shard.stat().st_size == 128 + 3 * 12 for shard in shards[:(index + 1) // 3])  # and full after 3
    with pytest.raises(ValueError, match=r"an image of \(3, 2, 3\) in a split of \(2, 2, 3\)"):
        writer.add(np.zeros((3, 2, 3), np.uint8), 0, "odd.png")
    assert not (tmp_path / "split/split.json").exists()  # not a split until closed
    assert writer.close() == 7
    assert len(load_image_set(tmp_path / "split")) == 7


def test_a_packed_split_names_only_the_classes_it_has_unless_told_the_models_classes(tmp_path):
    path = packed(tmp_path, [1, 1], ("ant", "bee", "cat"))
    assert load_image_set(path).class_names == ("bee",) and load_image_set(path).labels.tolist() == [0, 0]
    assert load_image_set(path, ["ant", "bee", "cat"]).labels.tolist() == [1, 1]
    with pytest.raises(PipelineError, match="not trained on: bee"):
        load_image_set(path, ["ant", "cat"])


def test_a_missing_empty_old_or_damaged_split_says_what_to_do(tmp_path):
    with pytest.raises(PipelineError, match="not a resized split .*run the resize stage first"):
        open_split(tmp_path / "nowhere")
    (tmp_path / "old.npz").write_bytes(b"")
    with pytest.raises(PipelineError, match="older version of this project: run the resize stage again"):
        open_split(tmp_path / "old")
    save_image_set(tmp_path / "empty", ImageSet(np.zeros((0, 4, 4, 3), np.uint8), np.zeros(0, np.int32), (), ("a",)))
    with pytest.raises(PipelineError, match="no images in .*empty.*skipped_resize.csv"):
        open_split(tmp_path / "empty")
    path = packed(tmp_path, [0, 0, 0], ("a",))
    shard = path / shard_name(0)
    shard.write_bytes(shard.read_bytes()[:-5])
    with pytest.raises(PipelineError, match="ends early: the split is damaged; run the resize stage again"):
        open_split(path).read(np.arange(3))


def test_unpack_writes_class_folders_of_pngs_and_keeps_names_apart(tmp_path):
    path = packed(tmp_path, [0, 0, 1], ("cat", "dog"), files=("train/cat/1.jpg", "test/cat/1.png", "dog/x.y.jpg"),
                  shard_bytes=48)  # one image a shard
    with open_split(path) as split:
        assert write_image_folder(split, tmp_path / "out", block=2) == 3
    written = sorted(str(file.relative_to(tmp_path / "out")) for file in (tmp_path / "out").rglob("*.png"))
    assert written == ["cat/1.png", "cat/test__cat__1_png.png", "dog/x.y.png"]
    with Image.open(tmp_path / "out/cat/test__cat__1_png.png") as image:
        assert image.size == (4, 4) and np.asarray(image)[0, 0].tolist() == [10, 10, 10]
    with pytest.raises(PipelineError, match="already exists"):
        write_image_folder(load_image_set(path), tmp_path / "out")

"""The streaming input path: batches read from a split's shards, in the caller's order, in bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from imgclf.data.dataset import ImageSet, ShardWriter, open_split, save_image_set
from imgclf.modeling.batches import SplitBatches, split_batches
from tests.helpers import PROJECT_ROOT


def small_set(count=23, side=4):
    rng = np.random.default_rng(5)
    return ImageSet(rng.integers(0, 256, size=(count, side, side, 3), dtype=np.uint8),
                    rng.integers(0, 2, size=count).astype(np.int32), tuple(f"{i}.png" for i in range(count)),
                    ("a", "b"))


def test_batches_follow_the_given_order_across_shards_and_end_with_the_remainder(tmp_path):
    written = small_set()
    save_image_set(tmp_path / "split", written, shard_bytes=5 * 48)
    order = np.random.default_rng(0).permutation(23)
    with open_split(tmp_path / "split") as split:
        batches = SplitBatches(split, order, 8)
        assert len(batches) == 3
        got = [batches[index] for index in range(len(batches))]
        assert [len(images) for images, _ in got] == [8, 8, 7]
        np.testing.assert_array_equal(np.concatenate([images for images, _ in got]), written.images[order])
        np.testing.assert_array_equal(np.concatenate([labels for _, labels in got]), written.labels[order])
        (mirrored,) = SplitBatches(split, None, 30, labels=False, flip=True)[0]
        np.testing.assert_array_equal(mirrored, written.images[:, :, ::-1])


def test_the_backends_input_gives_the_same_batches_in_blocks_of_several(tmp_path, monkeypatch):
    """What fit and predict get on this backend (a tf.data pipeline reading several batches per
    call under TensorFlow) holds exactly SplitBatches' batches, the short last one included."""
    import imgclf.modeling.batches

    monkeypatch.setattr(imgclf.modeling.batches, "BLOCK_BYTES", 3 * 5 * 48)  # blocks of 3 batches of 5 images
    written = small_set()
    save_image_set(tmp_path / "split", written, shard_bytes=5 * 48)
    order = np.random.default_rng(1).permutation(23)
    with open_split(tmp_path / "split") as split:
        expected = SplitBatches(split, order, 5)
        got = [tuple(np.asarray(part) for part in batch) for batch in split_batches(split, order, 5)]
        assert len(got) == len(expected) == 5
        for (images, labels), (want_images, want_labels) in zip(got, (expected[i] for i in range(5)), strict=True):
            np.testing.assert_array_equal(images, want_images)
            np.testing.assert_array_equal(labels, want_labels)
        mirrored = np.concatenate([np.asarray(batch[0] if isinstance(batch, tuple) else batch)
                                   for batch in split_batches(split, None, 5, labels=False, flip=True)])
        np.testing.assert_array_equal(mirrored, written.images[:, :, ::-1])


# Trains one epoch (validating on the same split) through imgclf.training.loop.train, as the train stage
# does, and prints the process's peak resident memory.
TRAIN_ONE_EPOCH = textwrap.dedent("""
    import json, resource, sys
    import keras
    from imgclf.data.dataset import open_split
    from imgclf.modeling.params import TrainParams
    from imgclf.training.loop import train

    split = open_split(sys.argv[1])
    def build():
        return keras.Sequential([keras.Input(split.image_shape), keras.layers.Rescaling(1 / 255),
                                 keras.layers.Conv2D(4, 3, strides=4), keras.layers.GlobalAveragePooling2D(),
                                 keras.layers.Dense(len(split.class_names), activation="softmax")])
    train(build, split, split, TrainParams(epochs=1, batch_size=32, seed=0))
    print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""")


def peak_training_memory_mb(folder) -> float:
    result = subprocess.run([sys.executable, "-c", TRAIN_ONE_EPOCH, str(folder)], capture_output=True, text=True,
                            cwd=PROJECT_ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_mb"]


@pytest.mark.slow
def test_training_memory_does_not_grow_with_the_split(tmp_path):
    """A split 8 times larger (375 MB of pixels against 47 MB, each thousands of batches and many
    times the read queue) costs training no more memory: only batches are ever in memory.

    The smaller split is large enough for the process's heap to have settled: measured, the peak
    rises by about 40 MB over the first 10,000 images of an epoch (allocator warm-up), then stays
    (48,000 images: 9 MB more than 12,000)."""
    rng = np.random.default_rng(0)
    sizes = {"small": 4_000, "large": 32_000}
    for name, count in sizes.items():
        writer = ShardWriter(tmp_path / name, (64, 64, 3), ("a", "b"), shard_bytes=16 * 2**20)
        for start in range(0, count, 500):
            block = rng.integers(0, 256, size=(500, 64, 64, 3), dtype=np.uint8)
            for offset, pixels in enumerate(block):
                writer.add(pixels, (start + offset) % 2, f"{start + offset}.png")
        writer.close()
    peaks = {name: peak_training_memory_mb(tmp_path / name) for name in sizes}
    pixels_mb = {name: count * 64 * 64 * 3 / 2**20 for name, count in sizes.items()}
    growth = peaks["large"] - peaks["small"]
    # held in memory, the extra 328 MB of pixels would add at least that much (the old path: 3.25x it)
    print(f"peak resident memory: {peaks}, pixels: {pixels_mb}")
    assert growth < 0.25 * (pixels_mb["large"] - pixels_mb["small"]), (peaks, pixels_mb)

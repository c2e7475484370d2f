"""train.mixup and train.cutmix (imgclf.modeling.mixing): what each mix computes, how the batches carry
it on both input paths, the loss and accuracy that read its labels, and a real run with both on."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from imgclf.modeling.batches import SplitBatches, split_batches
from imgclf.modeling.mixing import Mixing, cutmix_images, mixup_images, one_hot
from imgclf.modeling.optim import SparseCategoricalCrossentropyWithSmoothing, top1_accuracy
from imgclf.modeling.params import TrainParams
from imgclf.plumbing.params import ParamsError, parse_section
from imgclf.training.checkpoints import Checkpoints, fingerprint
from tests.test_training import assert_same_weights, colour_set, train_once


def flat_images(count: int, side: int = 8) -> np.ndarray:
    """Image ``i`` is the level ``20 * i + 10`` everywhere: each pixel tells which image it came from."""
    return np.repeat(np.arange(count, dtype=np.uint8)[:, None, None, None] * 20 + 10, side * side * 3).reshape(
        count, side, side, 3)


def test_mixup_blends_the_pixels_and_the_labels_in_the_same_share():
    """Image ``i`` is flat at level ``20 i + 10`` and of class ``i``: a blend's level is the mean of the
    classes' levels weighted by its label shares."""
    images, labels = flat_images(6), np.arange(6)
    for seed in range(10):
        mixed, shares = Mixing(mixup=0.4, cutmix=0.0, outputs=6, seed=seed, epoch=0)(images, labels, batch_index=0)
        assert mixed.dtype == np.uint8 and mixed.shape == images.shape and shares.dtype == np.float32
        np.testing.assert_allclose(shares.sum(axis=1), 1.0, rtol=1e-6)
        assert np.all(np.count_nonzero(shares, axis=1) <= 2)  # itself and one partner
        for image, share_row in zip(mixed, shares, strict=True):
            assert np.all(image == image[0, 0, 0])  # a blend of two flat images is flat
            assert abs(float(image[0, 0, 0]) - share_row @ (20 * np.arange(6) + 10)) <= 0.5  # uint8's rounding
    assert mixup_images(images[:1], images[1:2], 0.3)[0, 0, 0, 0] == round(0.3 * 10 + 0.7 * 30)


def test_cutmix_labels_are_the_share_of_pixels_each_image_keeps():
    images = flat_images(8, side=16)
    labels = np.arange(8) % 4
    for seed in range(20):
        mixed, shares = Mixing(mixup=0.0, cutmix=1.0, outputs=4, seed=seed, epoch=2)(images, labels, 0)
        np.testing.assert_allclose(shares.sum(axis=1), 1.0, rtol=1e-6)
        for index, (image, share_row) in enumerate(zip(mixed, shares, strict=True)):
            kept = np.mean(image[..., 0] == images[index, 0, 0, 0])
            pixels_by_label = np.zeros(4)
            for level in np.unique(image[..., 0]):
                pixels_by_label[labels[(int(level) - 10) // 20]] += np.mean(image[..., 0] == level)
            np.testing.assert_allclose(share_row, pixels_by_label, atol=1e-6)
            assert kept <= share_row[labels[index]] + 1e-6  # more, where its partner has the same label


def test_a_cutmix_box_at_the_edge_is_clipped_and_the_share_says_so():
    images, partners = np.zeros((1, 10, 10, 1), np.uint8), np.full((1, 10, 10, 1), 255, np.uint8)
    for seed in range(50):
        mixed, share = cutmix_images(images, partners, 0.5, np.random.default_rng(seed))
        assert share == pytest.approx(1 - np.mean(mixed == 255))
        assert share >= 0.5 - 1e-9  # the box never covers more than asked, only less at an edge


def test_the_draws_are_a_function_of_seed_epoch_and_batch():
    images, labels = flat_images(8), np.arange(8) % 3
    mix = Mixing(mixup=1.0, cutmix=1.0, outputs=3, seed=7, epoch=4)
    first = mix(images, labels, 5)
    again = Mixing(mixup=1.0, cutmix=1.0, outputs=3, seed=7, epoch=4)(images, labels, 5)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    others = [Mixing(1.0, 1.0, 3, 7, 5)(images, labels, 5), mix(images, labels, 6), Mixing(1.0, 1.0, 3, 8, 4)(
        images, labels, 5)]
    assert all(not np.array_equal(first[1], other[1]) for other in others)


def test_with_both_on_a_batch_is_either_blended_or_patched():
    images, labels = flat_images(8), np.arange(8) % 3
    kinds = set()
    for batch_index in range(40):
        mixed, _ = Mixing(1.0, 1.0, 3, 0, 0)(images, labels, batch_index)
        flat = all(len(np.unique(image)) == 1 for image in mixed)
        kinds.add("mixup" if flat else "cutmix")
    assert kinds == {"mixup", "cutmix"}


def test_one_sigmoid_output_gets_the_share_of_class_one():
    images, labels = flat_images(6), np.array([0, 1, 0, 1, 1, 0])
    mixed, shares = Mixing(1.0, 0.0, outputs=1, seed=2, epoch=0)(images, labels, 0)
    assert shares.shape == (6,) and np.all((shares >= 0) & (shares <= 1))
    np.testing.assert_array_equal(one_hot(labels, 1), labels.astype(np.float32))


def test_a_single_image_batch_is_left_as_it_is():
    images = flat_images(1)
    mixed, shares = Mixing(1.0, 1.0, 3, 0, 0)(images, np.array([2]), 0)
    np.testing.assert_array_equal(mixed, images)
    np.testing.assert_array_equal(shares, [[0, 0, 1]])


def test_the_tensorflow_pipeline_and_the_pydataset_mix_the_same_batches():
    """The TF path reads blocks of several batches and mixes each batch of a block on its own."""
    split = colour_set(50, 0)
    rows = np.random.default_rng(0).permutation(50)
    mixing = Mixing(0.5, 1.0, 3, seed=4, epoch=1)
    from_tf = [(images.numpy(), shares.numpy()) for images, shares in split_batches(split, rows, 8, mixing=mixing)]
    from_python = [SplitBatches(split, rows, 8, mixing=mixing)[index] for index in range(7)]
    assert len(from_tf) == len(from_python) == 7
    for (tf_images, tf_shares), (images, shares) in zip(from_tf, from_python, strict=True):
        np.testing.assert_array_equal(tf_images, images)
        np.testing.assert_array_equal(tf_shares, shares)
        assert shares.shape == (len(images), 3)


def test_mixing_refuses_batches_without_labels():
    with pytest.raises(ValueError, match="needs the labels"):
        split_batches(colour_set(8, 0), None, 4, labels=False, mixing=Mixing(1.0, 0.0, 3, 0, 0))


def test_the_loss_of_one_hot_shares_is_the_loss_of_integer_labels():
    rng = np.random.default_rng(0)
    probabilities = keras.ops.softmax(rng.normal(size=(6, 4)).astype("float32"))
    labels = np.array([0, 1, 2, 3, 1, 0])
    for smoothing in (0.0, 0.1):
        loss = SparseCategoricalCrossentropyWithSmoothing(smoothing)
        from_labels = float(loss(labels, probabilities))
        from_shares = float(loss(one_hot(labels, 4), probabilities))
        assert from_shares == pytest.approx(from_labels, rel=1e-6)
    # a half-and-half label costs the mean of the two labels' losses
    shares = 0.5 * one_hot(labels, 4) + 0.5 * one_hot((labels + 1) % 4, 4)
    loss = SparseCategoricalCrossentropyWithSmoothing(0.0)
    expected = 0.5 * float(loss(labels, probabilities)) + 0.5 * float(loss((labels + 1) % 4, probabilities))
    assert float(loss(shares, probabilities)) == pytest.approx(expected, rel=1e-6)


def test_the_accuracy_reads_integer_labels_and_the_larger_share_alike():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]], np.float32)
    labels = np.array([0, 2, 2])
    np.testing.assert_array_equal(top1_accuracy(labels, probabilities), [1, 0, 1])
    np.testing.assert_array_equal(top1_accuracy(labels[:, None], probabilities), [1, 0, 1])
    shares = np.array([[0.6, 0.4, 0], [0, 0.3, 0.7], [0.1, 0, 0.9]], np.float32)
    np.testing.assert_array_equal(top1_accuracy(shares, probabilities), [1, 0, 1])
    sigmoid = np.array([[0.9], [0.2], [0.6]], np.float32)
    np.testing.assert_array_equal(top1_accuracy(np.array([0.7, 0.4, 0.1], np.float32), sigmoid), [1, 1, 0])


@pytest.mark.parametrize("key", ["mixup", "cutmix"])
def test_a_negative_alpha_names_the_key(key):
    with pytest.raises(ParamsError, match=f"train.{key}"):
        parse_section(TrainParams, {key: -1.0}, "train")


@pytest.mark.slow
@pytest.mark.parametrize("num_classes", [2, 3])
def test_a_run_with_both_mixes_learns_reports_accuracy_and_resumes_to_the_same_weights(num_classes, tmp_path):
    params = TrainParams(epochs=4, batch_size=8, learning_rate=0.01, seed=0, mixup=0.4, cutmix=1.0,
                         label_smoothing=0.1, resume=True)
    model, result, train_set, _ = train_once(params, num_classes)
    assert set(result.history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert max(result.history["val_accuracy"]) > 0.9
    # the checkpoint, compiled with the mixing loss and accuracy, loads and resumes
    checkpoints = Checkpoints(tmp_path, fingerprint(params, train_set))

    class StopAfterTwo:
        def log_epoch(self, epoch, record):
            if epoch == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_once(params, num_classes, sinks=[StopAfterTwo()], checkpoints=checkpoints)
    resumed, resumed_result, *_ = train_once(params, num_classes, checkpoints=checkpoints)
    assert_same_weights(resumed, model)
    assert resumed_result.history["val_accuracy"] == result.history["val_accuracy"]


def mixed_run_history(num_classes: int) -> dict[str, list[float]]:
    """A short run with both mixes on, its curves (run by the JAX test in a process of its own)."""
    params = TrainParams(epochs=3, batch_size=8, learning_rate=0.01, seed=0, mixup=0.4, cutmix=1.0)
    return train_once(params, num_classes)[1].history


@pytest.mark.slow
def test_a_mixed_run_learns_on_jax_too():
    """JAX reads the batches through the PyDataset and traces the loss and accuracy with its own shapes."""
    from tests.helpers import on_jax

    history = on_jax("from tests.test_mixing import mixed_run_history", "mixed_run_history(3)")
    assert history["loss"][-1] < history["loss"][0] and max(history["val_accuracy"]) > 0.9

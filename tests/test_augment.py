"""ImageDataGenerator parity: each augmentation setting of train.augment changes training images
when on and leaves them when off; inference never changes an image; the geometry follows
ImageDataGenerator's units; featurewise normalisation and rescale."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import pytest

from imgclf.modeling.augment import RandomAffine, RandomTranslate, start_epoch
from imgclf.modeling.models import ChannelStatistics, augmentation, build_model
from imgclf.modeling.params import AugmentParams

IMAGES = np.random.default_rng(0).uniform(0, 200, size=(16, 12, 12, 3)).astype("float32")
# every setting of train.augment that changes images, with a value that is on
SETTINGS_ON: dict[str, Any] = {"horizontal_flip": True, "vertical_flip": True, "rotation": 30.0, "width_shift": 0.2,
               "height_shift": 0.2, "shear": 30.0, "zoom": 0.3, "brightness": (0.5, 1.5), "contrast": 0.5,
               "translate": 2}


def augmented(params: AugmentParams, images: np.ndarray = IMAGES, training: bool = True, seed: int = 1) -> np.ndarray:
    random_layers = augmentation(params, seed)
    if not random_layers:
        return images
    return keras.ops.convert_to_numpy(keras.Sequential(random_layers)(images, training=training))


def changed_images(outputs: np.ndarray, images: np.ndarray = IMAGES) -> int:
    return sum(not np.allclose(out, original, atol=1e-3) for out, original in zip(outputs, images, strict=True))


@pytest.mark.parametrize("setting", sorted(SETTINGS_ON))
def test_each_setting_changes_training_images_when_on_and_never_inference_ones(setting):
    params = AugmentParams(**{setting: SETTINGS_ON[setting]})
    assert changed_images(augmented(params)) >= 4, setting  # a flip leaves about half the images as they were
    np.testing.assert_array_equal(augmented(params, training=False), IMAGES)


@pytest.mark.parametrize("setting", sorted(SETTINGS_ON))
def test_each_setting_off_leaves_training_images_as_they_are(setting):
    default: dict[str, Any] = {setting: AugmentParams.__dataclass_fields__[setting].default}
    off = AugmentParams(**default)
    others_on = {name: value for name, value in SETTINGS_ON.items() if name != setting}
    assert augmentation(off, seed=1) == []  # nothing is added for a setting that is off
    # and with every other setting on, turning this one on changes what comes out
    assert not np.allclose(augmented(AugmentParams(**others_on)), augmented(AugmentParams(**SETTINGS_ON)))


def test_fill_mode_and_cval_decide_the_pixels_from_outside_the_image():
    shifted: dict[str, Any] = {"width_shift": 0.4, "height_shift": 0.4}
    constant = augmented(AugmentParams(**shifted, fill_mode="constant", cval=7.0))
    assert (constant == 7.0).any()
    nearest = augmented(AugmentParams(**shifted, fill_mode="nearest"))
    assert not (nearest == 7.0).any()
    for mode in ("reflect", "wrap"):
        assert not np.allclose(augmented(AugmentParams(**shifted, fill_mode=mode)), nearest), mode


def test_width_shift_moves_columns_and_height_shift_rows():
    rows = np.repeat(np.arange(12, dtype="float32")[None, :, None, None] * 10, 12, axis=2).repeat(3, axis=3)
    rows = np.repeat(rows, 8, axis=0)  # every row one value: a horizontal move changes nothing
    np.testing.assert_allclose(augmented(AugmentParams(width_shift=0.3), rows), rows, atol=1e-3)
    assert changed_images(augmented(AugmentParams(height_shift=0.3), rows), rows) >= 4


def test_brightness_multiplies_each_image_by_one_factor_from_the_range():
    outputs = augmented(AugmentParams(brightness=(0.5, 1.2)))  # IMAGES < 200: 1.2 x stays below 255
    factors = outputs / np.maximum(IMAGES, 1e-3)
    per_image = np.median(factors.reshape(len(IMAGES), -1), axis=1)
    assert ((per_image >= 0.5 - 1e-4) & (per_image <= 1.2 + 1e-4)).all()
    np.testing.assert_allclose(outputs, IMAGES * per_image[:, None, None, None], rtol=1e-4)


@pytest.mark.parametrize(("setting", "axis"), [("horizontal_flip", 2), ("vertical_flip", 1)])
def test_a_flip_is_an_exact_mirror(setting, axis):
    flip: dict[str, Any] = {setting: True}
    outputs = augmented(AugmentParams(**flip), seed=3)
    mirrors = np.flip(IMAGES, axis=axis)
    flipped = [np.allclose(out, mirror, atol=1e-3) for out, mirror in zip(outputs, mirrors, strict=True)]
    kept = [np.allclose(out, original, atol=1e-3) for out, original in zip(outputs, IMAGES, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 0 < sum(flipped) < len(IMAGES)


def test_rotation_is_in_degrees():
    # a centred square rotated by at most 2 degrees stays nearly where it is; by up to 45 it does not
    square = np.zeros((8, 33, 33, 3), "float32")
    square[:, 8:25, 8:25] = 255
    small = augmented(AugmentParams(rotation=2.0, fill_mode="constant"), square)
    large = augmented(AugmentParams(rotation=45.0, fill_mode="constant"), square)
    assert np.abs(small - square).mean() < np.abs(large - square).mean() / 4


def test_a_seed_fixes_the_draws():
    everything = AugmentParams(**SETTINGS_ON)
    np.testing.assert_array_equal(augmented(everything, seed=5), augmented(everything, seed=5))
    assert not np.allclose(augmented(everything, seed=5), augmented(everything, seed=6))


def test_config_round_trips_and_bad_fill_mode_is_refused():
    layer = RandomAffine(rotation=10, shear=5, zoom=0.2, width_shift=0.1, fill_mode="constant", fill_value=1.0, seed=4)
    assert RandomAffine.from_config(layer.get_config()).get_config() == layer.get_config()
    with pytest.raises(ValueError, match="nearest, reflect, wrap, constant"):
        RandomAffine(fill_mode="mirror-ish")


@pytest.mark.parametrize(("center", "standardize"), [(True, False), (True, True), (False, True)])
def test_featurewise_normalisation_uses_the_training_split_statistics(center, standardize):
    images = np.random.default_rng(1).integers(0, 256, size=(50, 6, 6, 3), dtype=np.uint8)
    images[..., 1] //= 4  # channels with different statistics
    stats = ChannelStatistics.of([images[:20], images[20:]], 1 / 255, center, standardize)  # two blocks
    scaled = images.astype(np.float64) / 255
    expected_mean = scaled.mean(axis=(0, 1, 2)) if center else np.zeros(3)
    np.testing.assert_allclose(stats.mean, expected_mean, rtol=1e-9)
    np.testing.assert_allclose(stats.variance, scaled.var(axis=(0, 1, 2)) if standardize else np.ones(3), rtol=1e-9)
    model = build_model("simple_cnn", (6, 6, 3), 3, normalization=stats)
    probe = keras.Model(model.input, model.get_layer("featurewise_normalization").output)
    normalised = keras.ops.convert_to_numpy(probe(images.astype("float32")))
    spread = scaled.std(axis=(0, 1, 2)) if standardize else 1
    np.testing.assert_allclose(normalised.mean(axis=(0, 1, 2)), 0 if center else scaled.mean(axis=(0, 1, 2)) / spread,
                               atol=1e-4)
    if standardize:
        np.testing.assert_allclose(normalised.std(axis=(0, 1, 2)), 1, atol=1e-3)


def test_rescale_replaces_the_networks_own_input_scaling():
    assert build_model("simple_cnn", (8, 8, 3), 3).get_layer("rescaling").scale == pytest.approx(1 / 255)
    assert build_model("simple_cnn", (8, 8, 3), 3, rescale=0.5).get_layer("rescaling").scale == 0.5
    transfer = build_model("transfer", (32, 32, 3), 3, weights=None, rescale=1 / 127.5)
    assert transfer.get_layer("rescaling").scale == pytest.approx(1 / 127.5)


def test_alternating_flips_mirror_each_image_in_every_other_epoch():
    pixels = np.random.default_rng(3).integers(0, 256, size=(32, 6, 6, 3)).astype("float32")
    model = build_model("simple_cnn", (6, 6, 3), 3, augment=AugmentParams(horizontal_flip="alternate"))
    layer = model.get_layer("augmentation")
    flipped_by_epoch = []
    for epoch in range(4):
        start_epoch(model, epoch)  # as the training loop does before each epoch's fit
        outputs = keras.ops.convert_to_numpy(layer(pixels, training=True))
        flipped = np.array([np.array_equal(out, image[:, ::-1]) for out, image in zip(outputs, pixels, strict=True)])
        kept = np.array([np.array_equal(out, image) for out, image in zip(outputs, pixels, strict=True)])
        assert (flipped ^ kept).all()  # each image mirrored exactly, or left as it is
        flipped_by_epoch.append(flipped)
    assert 8 <= flipped_by_epoch[0].sum() <= 24  # about half start mirrored
    for before, after in zip(flipped_by_epoch, flipped_by_epoch[1:], strict=False):
        np.testing.assert_array_equal(after, ~before)  # and every image alternates
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(pixels, training=False)), pixels)


def test_translate_shifts_by_whole_pixels_with_reflected_edges():
    pixels = np.random.default_rng(4).integers(0, 256, size=(64, 8, 8, 3)).astype("float32")
    outputs = keras.ops.convert_to_numpy(RandomTranslate(2, seed=0)(pixels, training=True))
    padded = np.pad(pixels, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")  # airbench's (PyTorch's) reflection
    shifts = []
    for out, image in zip(outputs, padded, strict=True):
        found = [(down, right) for down in range(-2, 3) for right in range(-2, 3)
                 if np.array_equal(out, image[2 + down:10 + down, 2 + right:10 + right])]
        assert found, "an output that is no whole-pixel crop of the reflected image"
        shifts.append(found[0])
    assert len(set(shifts)) >= 15  # the 25 shifts are all drawn
    np.testing.assert_array_equal(RandomTranslate(2)(pixels, training=False), pixels)


def test_flip_translate_averages_six_views():
    from imgclf.modeling.outputs import with_test_time_augmentation

    images = np.random.default_rng(5).integers(0, 256, size=(3, 5, 7, 3)).astype("float64")

    def top_left(views: np.ndarray) -> np.ndarray:  # a "model" that reads one pixel: which view is plain
        return views[:, 0, 0, :]

    outputs = with_test_time_augmentation(top_left, images, "flip_translate")
    # the image and its mirror; shifted a pixel down-right and up-left (reflected: both read pixel
    # (1, 1) at the top left) and their mirrors (both pixel (1, width - 2))
    expected = (images[:, 0, 0] + images[:, 0, -1]) / 4 + (images[:, 1, 1] + images[:, 1, -2]) / 4
    np.testing.assert_allclose(outputs, expected)

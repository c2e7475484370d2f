"""RandomAffine: each setting changes training images when on and leaves them when off; flips are
exact mirrors; inference never changes an image; a seed fixes the draws."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from imgclf.augment import RandomAffine

IMAGES = np.random.default_rng(0).uniform(0, 255, size=(16, 12, 12, 3)).astype("float32")
SETTINGS = {"horizontal_flip": True, "vertical_flip": True, "rotation": 0.1, "zoom": 0.2, "translation": 0.2}


def augmented(layer: RandomAffine, images: np.ndarray = IMAGES, training: bool = True) -> np.ndarray:
    return keras.ops.convert_to_numpy(layer(images, training=training))


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_each_setting_changes_training_images_and_never_inference_ones(setting):
    layer = RandomAffine(**{setting: SETTINGS[setting]}, seed=1)
    changed = [not np.allclose(out, original, atol=1e-3) for out, original in zip(augmented(layer), IMAGES,
                                                                                     strict=True)]
    assert sum(changed) >= 4, setting  # a flip leaves about half the images as they were
    np.testing.assert_array_equal(augmented(layer, training=False), IMAGES)


def test_all_settings_off_leave_training_images_as_they_are():
    np.testing.assert_allclose(augmented(RandomAffine(seed=1)), IMAGES, atol=1e-4)


@pytest.mark.parametrize(("setting", "axis"), [("horizontal_flip", 2), ("vertical_flip", 1)])
def test_a_flip_is_an_exact_mirror(setting, axis):
    outputs = augmented(RandomAffine(**{setting: True}, seed=3))
    mirrors = np.flip(IMAGES, axis=axis)
    flipped = [np.allclose(out, mirror, atol=1e-3) for out, mirror in zip(outputs, mirrors, strict=True)]
    kept = [np.allclose(out, original, atol=1e-3) for out, original in zip(outputs, IMAGES, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 0 < sum(flipped) < len(IMAGES)


def test_constant_fill_uses_the_fill_value_outside_the_image():
    layer = RandomAffine(translation=0.4, fill_mode="constant", fill_value=-7.0, seed=2)
    assert (augmented(layer) == -7.0).any()
    assert not (augmented(RandomAffine(translation=0.4, seed=2)) == -7.0).any()  # reflect: no fill


def test_a_seed_fixes_the_draws():
    first = augmented(RandomAffine(**SETTINGS, seed=5))
    np.testing.assert_array_equal(first, augmented(RandomAffine(**SETTINGS, seed=5)))
    assert not np.allclose(first, augmented(RandomAffine(**SETTINGS, seed=6)))


def test_config_round_trips_and_bad_fill_mode_is_refused():
    layer = RandomAffine(**SETTINGS, fill_mode="constant", fill_value=1.0, seed=4)
    assert RandomAffine.from_config(layer.get_config()).get_config() == layer.get_config()
    with pytest.raises(ValueError, match="reflect, wrap, constant, nearest"):
        RandomAffine(fill_mode="mirror-ish")

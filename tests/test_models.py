"""Model smoke tests: build every architecture, one forward pass, output shape, no NaN, reload."""

import keras
import numpy as np
import pytest

from imgclf.modelio import load_model, save_model
from imgclf.models import ARCHITECTURES, build_model
from imgclf.params import AugmentParams

ALL_AUGMENTATION = AugmentParams(horizontal_flip=True, vertical_flip=True, rotation=0.1, zoom=0.1,
                                 translation=0.1, contrast=0.1)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
@pytest.mark.parametrize("num_classes", [2, 10])
def test_forward_pass_shape_and_finite(name, num_classes):
    model = build_model(name, (32, 32, 3), num_classes, augment=ALL_AUGMENTATION, seed=1)
    batch = np.random.default_rng(0).integers(0, 256, size=(4, 32, 32, 3)).astype("float32")
    outputs = keras.ops.convert_to_numpy(model(batch, training=False))
    assert outputs.shape == (4, 1 if num_classes == 2 else num_classes)
    assert np.isfinite(outputs).all()
    assert ((outputs >= 0) & (outputs <= 1)).all()


def test_cifar_cnn_has_the_published_parameter_count():
    model = build_model("cifar_cnn", (32, 32, 3), 10)
    assert model.count_params() == pytest.approx(1_071_542, rel=0.01)
    assert sum(isinstance(layer, keras.layers.Conv2D) for layer in model.layers) == 15


def test_a_saved_model_reloads_in_safe_mode_and_predicts_the_same(tmp_path):
    model = build_model("simple_cnn", (16, 16, 3), 3, augment=ALL_AUGMENTATION, seed=0)
    batch = np.random.default_rng(1).integers(0, 256, size=(2, 16, 16, 3)).astype("float32")
    save_model(model, tmp_path / "model.keras")
    save_model(model, tmp_path / "again.keras")
    assert (tmp_path / "model.keras").read_bytes() == (tmp_path / "again.keras").read_bytes()
    reloaded = load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(reloaded.predict(batch, verbose=0), model.predict(batch, verbose=0), atol=1e-6)


def test_augmentation_is_off_at_inference():
    model = build_model("simple_cnn", (16, 16, 3), 3, augment=ALL_AUGMENTATION, seed=0)
    batch = np.random.default_rng(2).integers(0, 256, size=(2, 16, 16, 3)).astype("float32")
    first = keras.ops.convert_to_numpy(model(batch, training=False))
    np.testing.assert_array_equal(first, keras.ops.convert_to_numpy(model(batch, training=False)))


def test_images_too_small_for_the_poolings_are_refused_with_the_size_to_use():
    with pytest.raises(ValueError, match=r"small_convnet halves the image 4 times.*at least 16x16"):
        build_model("small_convnet", (8, 8, 3), 10)


def test_unknown_architecture_lists_the_known_ones():
    with pytest.raises(ValueError, match="simple_cnn, small_convnet, cifar_cnn"):
        build_model("vgg99", (32, 32, 3), 10)

"""Model smoke tests: every network and every transfer backbone (weights none) builds, runs one
forward pass and one training step on a random batch with the right output shape and no NaN, and
reloads from a saved .keras file predicting the same."""

import keras
import numpy as np
import pytest

from imgclf.modeling.backbones import ImagenetPreprocessing, build_backbone, imagenet_weights_file
from imgclf.modeling.modelio import load_model, save_model
from imgclf.modeling.models import BACKBONE_LAYER, build_model, unfreeze_backbone
from imgclf.modeling.networks import BACKBONES, NETWORKS
from imgclf.modeling.optim import make_loss
from imgclf.modeling.params import AugmentParams
from imgclf.plumbing.errors import PipelineError

ALL_AUGMENTATION = AugmentParams(horizontal_flip=True, vertical_flip=True, rotation=10, width_shift=0.1,
                                 height_shift=0.1, shear=10, zoom=0.1, brightness=(0.8, 1.2), contrast=0.1)
FROM_SCRATCH = sorted(name for name in NETWORKS if name != "transfer")


def smoke(model: keras.Model, side: int, num_classes: int, tmp_path) -> None:
    """One forward pass, one training step, a reload that predicts the same."""
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, size=(4, side, side, 3)).astype("float32")
    labels = np.arange(4) % num_classes
    outputs = keras.ops.convert_to_numpy(model(batch, training=False))
    assert outputs.shape == (4, 1 if num_classes == 2 else num_classes)
    assert np.isfinite(outputs).all() and ((outputs >= 0) & (outputs <= 1)).all()
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=make_loss(num_classes == 2, 0.1))
    loss = model.train_on_batch(batch, labels)
    assert np.isfinite(loss)
    save_model(model, tmp_path / "model.keras")
    reloaded = load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(reloaded.predict(batch, verbose=0), model.predict(batch, verbose=0), atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "num_classes"), [*((name, 10) for name in FROM_SCRATCH), ("simple_cnn", 2),
                                                   ("fast_cnn", 2)])  # the sigmoid head is the same for all
def test_every_network_builds_trains_a_step_and_reloads(name, num_classes, tmp_path):
    side = max(32, NETWORKS[name].min_size)  # a network that shrinks the image more needs more
    smoke(build_model(name, (side, side, 3), num_classes, augment=ALL_AUGMENTATION, seed=1), side, num_classes,
          tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_every_transfer_backbone_builds_trains_a_step_and_reloads(backbone, tmp_path):
    side = BACKBONES[backbone].min_size
    model = build_model("transfer", (side, side, 3), 3, backbone=backbone, weights=None, augment=ALL_AUGMENTATION,
                        seed=1)
    assert not model.get_layer(BACKBONE_LAYER).trainable  # freeze_base by default
    smoke(model, side, 3, tmp_path)


def test_published_sizes():
    model = build_model("cifar_cnn", (32, 32, 3), 10)
    assert model.count_params() == pytest.approx(1_071_542, rel=0.01)
    assert sum(isinstance(layer, keras.layers.Conv2D) for layer in model.layers) == 15
    # He et al., table 6: 0.27M and 0.85M parameters
    assert build_model("resnet20", (32, 32, 3), 10).count_params() == pytest.approx(270_000, rel=0.03)
    assert build_model("resnet56", (32, 32, 3), 10).count_params() == pytest.approx(850_000, rel=0.03)
    vgg = build_model("vgg16", (32, 32, 3), 10)
    assert [layer.units for layer in vgg.layers if isinstance(layer, keras.layers.Dense)] == [4096, 1024, 10]


@pytest.mark.parametrize("mode", ["caffe", "tf", "torch"])
def test_backbone_preprocessing_layer_matches_keras_applications(mode):
    from keras.src.applications.imagenet_utils import preprocess_input

    pixels = np.random.default_rng(3).uniform(0, 255, size=(2, 5, 5, 3)).astype("float32")
    ours = keras.ops.convert_to_numpy(ImagenetPreprocessing(mode)(pixels))
    np.testing.assert_allclose(ours, preprocess_input(pixels.copy(), mode=mode), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_missing_imagenet_weights_without_a_network_name_the_file_and_folder(backbone, tmp_path, monkeypatch):
    # an empty Keras home, and a proxy on a closed local port: Keras' download fails on this machine
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    for variable in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")
    side = BACKBONES[backbone].min_size
    with pytest.raises(PipelineError) as caught:
        build_backbone(backbone, (side, side, 3), "imagenet")
    message = str(caught.value)
    file_name = imagenet_weights_file(backbone, (side, side, 3))
    assert f"/{file_name}:" in message  # the URL Keras tried ends with the file we name
    assert f"put {file_name} into {tmp_path / 'keras' / 'models'}/" in message


@pytest.mark.slow
def test_weights_from_a_file_are_loaded_and_a_missing_file_is_named(tmp_path):
    source = build_backbone("mobilenet_v2", (32, 32, 3), None)
    source.save_weights(tmp_path / "backbone.weights.h5")
    loaded = build_model("transfer", (32, 32, 3), 2, backbone="mobilenet_v2",
                         weights=str(tmp_path / "backbone.weights.h5")).get_layer(BACKBONE_LAYER)
    for ours, theirs in zip(loaded.get_weights(), source.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    with pytest.raises(PipelineError, match=r"no weights file at .*missing\.h5"):
        build_model("transfer", (32, 32, 3), 2, weights=str(tmp_path / "missing.h5"))


def test_fine_tuning_unfreezes_the_top_layers_but_not_batch_norm():
    model = build_model("transfer", (32, 32, 3), 3, backbone="mobilenet_v2", weights=None)
    base = model.get_layer(BACKBONE_LAYER)
    frozen_trainable = len(model.trainable_weights)
    unfreeze_backbone(model, 10)
    top = base.layers[-10:]
    assert all(layer.trainable != isinstance(layer, keras.layers.BatchNormalization) for layer in top)
    assert not any(layer.trainable for layer in base.layers[:-10])
    assert len(model.trainable_weights) > frozen_trainable
    unfreeze_backbone(model, None)
    assert all(layer.trainable for layer in base.layers if not isinstance(layer, keras.layers.BatchNormalization))


def test_augmentation_is_off_at_inference():
    model = build_model("simple_cnn", (16, 16, 3), 3, augment=ALL_AUGMENTATION, seed=0)
    batch = np.random.default_rng(2).integers(0, 256, size=(2, 16, 16, 3)).astype("float32")
    first = keras.ops.convert_to_numpy(model(batch, training=False))
    np.testing.assert_array_equal(first, keras.ops.convert_to_numpy(model(batch, training=False)))


def test_saving_twice_gives_the_same_bytes(tmp_path):
    model = build_model("simple_cnn", (16, 16, 3), 3, augment=ALL_AUGMENTATION, seed=0)
    save_model(model, tmp_path / "model.keras")
    save_model(model, tmp_path / "again.keras")
    assert (tmp_path / "model.keras").read_bytes() == (tmp_path / "again.keras").read_bytes()


@pytest.mark.parametrize("name", FROM_SCRATCH)
def test_each_network_builds_at_its_stated_minimum_size_and_not_one_pixel_under(name):
    """``Network.min_size`` is what the network's layers allow, not a guess: its own layers give a
    feature map at that size and none one pixel under (the guard of build_model is left out here)."""
    network = NETWORKS[name]
    smallest = network.build(keras.Input((network.min_size, network.min_size, 3)), 0.0)
    assert all(side > 0 for side in smallest.shape[1:]), smallest.shape
    if network.min_size > 1:
        with pytest.raises(ValueError):
            under = network.build(keras.Input((network.min_size - 1, network.min_size - 1, 3)), 0.0)
            if any(side == 0 for side in under.shape[1:]):  # Keras can also build an empty map
                raise ValueError(f"an empty feature map {under.shape}")
        with pytest.raises(ValueError, match=rf"{name} needs images of at least {network.min_size}x"):
            build_model(name, (network.min_size - 1, network.min_size - 1, 3), 10)


def test_images_too_small_are_refused_with_the_size_to_use():
    with pytest.raises(ValueError, match=r"small_convnet needs images of at least 16x16.*got 8x8; raise resize.size"):
        build_model("small_convnet", (8, 8, 3), 10)
    with pytest.raises(PipelineError, match=r"inception_v3 backbone needs images of at least 75x75"):
        build_model("transfer", (32, 32, 3), 10, backbone="inception_v3")


def test_unknown_architecture_lists_the_known_ones():
    with pytest.raises(ValueError, match="simple_cnn, small_convnet, cifar_cnn, vgg16, resnet20"):
        build_model("vgg99", (32, 32, 3), 10)

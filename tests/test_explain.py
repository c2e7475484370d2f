"""Grad-CAM heatmaps with a known answer: a model trained on images whose class is a bright square in
one corner must look at that corner."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from imgclf.modeling.models import build_model
from imgclf.reporting.explain import ExplainError, GradCam
from imgclf.reporting.figures import overlay

pytestmark = pytest.mark.slow

SIDE = 32
CORNERS = {0: (slice(2, 10), slice(2, 10)), 1: (slice(2, 10), slice(22, 30)), 2: (slice(22, 30), slice(2, 10))}
QUADRANTS = {0: (slice(0, 16), slice(0, 16)), 1: (slice(0, 16), slice(16, 32)), 2: (slice(16, 32), slice(0, 16))}


def corner_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Grey noise; class c has a bright square in corner c (top left, top right, bottom left)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 3
    images = rng.integers(40, 120, size=(count, SIDE, SIDE, 3), dtype=np.uint8)
    for image, label in zip(images, labels, strict=True):
        image[CORNERS[int(label)]] = 250
    return images, labels


@pytest.fixture(scope="module")
def corner_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = build_model("simple_cnn", (SIDE, SIDE, 3), 3, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    images, labels = corner_images(300, seed=0)
    model.fit(images, labels, epochs=4, batch_size=32, verbose=0)
    return model


def test_the_heatmap_of_each_class_falls_on_its_corner(corner_model):
    images, labels = corner_images(30, seed=1)
    assert (corner_model.predict(images, verbose=0).argmax(axis=1) == labels).mean() == 1.0
    explained = GradCam.of(corner_model, images[:4])
    heatmaps = explained.heatmaps(images, labels)
    shares = []
    for heatmap, label in zip(heatmaps, labels, strict=True):
        assert heatmap is not None and heatmap.shape == (SIDE, SIDE) and 0 <= heatmap.min() <= heatmap.max() <= 1
        shares.append(heatmap[QUADRANTS[int(label)]].sum() / heatmap.sum())
    assert np.mean(shares) > 0.8, shares  # a quarter of the image holds 0.25 of a map spread evenly
    assert min(shares) > 0.6, shares


def test_an_overlay_is_the_image_tinted_by_the_heatmap():
    image = np.full((4, 4, 3), 100, dtype=np.uint8)
    heat = np.zeros((4, 4))
    heat[0, 0] = 1.0
    tinted = overlay(image, heat)
    assert tinted.dtype == np.uint8 and tinted.shape == image.shape
    assert not np.array_equal(tinted[0, 0], image[0, 0]) and overlay(image, None) is image


def test_a_backbone_that_shrinks_the_image_to_one_pixel_says_so():
    model = build_model("transfer", (32, 32, 3), 3, weights=None, backbone="mobilenet_v2")
    with pytest.raises(ExplainError, match=r"last feature map \(backbone\) is 1x1 at 32x32 pixels.*resize\.size"):
        GradCam.of(model, np.zeros((2, 32, 32, 3), dtype=np.uint8))


def test_a_transfer_backbone_large_enough_gives_a_heatmap_per_image():
    model = build_model("transfer", (96, 96, 3), 3, weights=None, backbone="mobilenet_v2")
    images = np.random.default_rng(0).integers(0, 255, size=(3, 96, 96, 3), dtype=np.uint8)
    explained = GradCam.of(model, images)
    assert explained.layer == "backbone"
    for heatmap in explained.heatmaps(images, [0, 1, 2]):
        assert heatmap is None or (heatmap.shape == (96, 96) and np.isfinite(heatmap).all())


def test_with_the_heatmaps_off_no_process_starts_and_both_galleries_say_so(tmp_path, caplog):
    from imgclf.reporting.heatmap_galleries import GALLERIES, HEATMAPS_OFF, HeatmapGalleries
    from imgclf.reporting.params import EvaluateParams

    # a model file that does not exist: a process that started would fail, and the stage would warn
    with HeatmapGalleries(tmp_path / "missing.keras", tmp_path / "test", ["a", "b"], EvaluateParams(heatmaps=False),
                        tmp_path) as heatmaps:
        heatmaps.draw(np.full((4, 2), 0.5, dtype=np.float32))
        assert heatmaps.wait() is None
    assert not [record for record in caplog.records if record.levelname == "WARNING"]
    for name in GALLERIES:
        assert (tmp_path / f"{name}_heatmaps.png").stat().st_size > 1000
    assert "evaluate.heatmaps" in HEATMAPS_OFF

"""PNG figures and the model card: real files, readable, the same bytes for the same results."""

from __future__ import annotations

import numpy as np
from PIL import Image

from imgclf.modeling.modelcard import GRAPHVIZ_HELP, draw_architecture, layer_summary
from imgclf.modeling.models import build_model
from imgclf.reporting import figures


def test_figures_are_pngs_and_reproducible(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 30)
    curves = [("a", 0, 0.0, 0.0), ("a", 1, 0.5, 0.9), ("a", 2, 1.0, 1.0), ("b", 0, 0.0, 0.0), ("b", 1, 1.0, 1.0)]
    images = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(5)]
    for attempt in ("first", "second"):
        figures.training_curves({"loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "accuracy": [0.5, 0.8],
                                 "val_accuracy": [0.4, 0.7]}, 2, tmp_path / attempt / "curves.png")
        figures.confusion_matrices(labels, rng.integers(0, 3, 30), ("x", "y", "z"), tmp_path / attempt / "cm.png")
        figures.class_curves(curves, "fpr", "tpr", "ROC", tmp_path / attempt / "roc.png", diagonal=True)
        figures.image_grid(images, [f"image {i}" for i in range(5)], "grid", tmp_path / attempt / "grid.png", columns=3)
        figures.image_grid([], [], "no mistakes", tmp_path / attempt / "empty.png")
        probabilities = rng.dirichlet(np.ones(3), 30)
        pixels = rng.integers(0, 256, (30, 16, 16, 3), dtype=np.uint8)
        folder = tmp_path / attempt
        figures.mistakes_gallery(pixels.__getitem__, labels, probabilities, ("x", "y", "z"), 6, folder / "mistakes.png")
        figures.samples_grid(pixels.__getitem__, labels, probabilities, ("x", "y", "z"), 4, folder / "samples.png")
        rng = np.random.default_rng(0)
        labels = rng.integers(0, 3, 30)
        images = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(5)]
    for name in ("curves.png", "cm.png", "roc.png", "grid.png", "empty.png", "mistakes.png", "samples.png"):
        with Image.open(tmp_path / "first" / name) as image:
            assert image.format == "PNG" and min(image.size) > 200, name
        assert (tmp_path / "first" / name).read_bytes() == (tmp_path / "second" / name).read_bytes(), name
        assert b"matplotlib" not in (tmp_path / "first" / name).read_bytes()  # no version stamp


def test_model_card_lists_layers_and_parameter_counts_the_same_with_or_without_graphviz(tmp_path, monkeypatch):
    model = build_model("simple_cnn", (16, 16, 3), 3)
    card = layer_summary(model)
    assert "conv2d" in card and "classifier (Dense)" in card
    assert f"Total params: {model.count_params():,}" in card
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no Graphviz `dot` on this PATH
    assert layer_summary(model) == card  # models/summary.txt (a DVC output) is the same


def test_without_graphviz_the_diagram_is_left_out_with_how_to_get_it(tmp_path, monkeypatch, caplog):
    import logging

    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with caplog.at_level(logging.INFO, logger="imgclf.modeling.modelcard"):
        assert not draw_architecture(build_model("simple_cnn", (16, 16, 3), 3), tmp_path / "architecture.png")
    assert GRAPHVIZ_HELP in caplog.text and "apt-get install graphviz" in caplog.text
    assert not (tmp_path / "architecture.png").exists()


def test_the_architecture_is_drawn_when_graphviz_is_installed(tmp_path):
    import shutil

    import pytest

    if shutil.which("dot") is None:
        pytest.skip("Graphviz's `dot` is not installed (make test installs it where it can: apt-get install graphviz)")
    assert draw_architecture(build_model("simple_cnn", (16, 16, 3), 3), tmp_path / "logs" / "architecture.png")
    with Image.open(tmp_path / "logs" / "architecture.png") as diagram:
        assert diagram.format == "PNG" and diagram.size[1] > 300

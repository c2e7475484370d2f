"""PNG figures for people who never open ``dvc plots``: curves, confusion matrices, image grids.

Saved by :func:`imgclf.plumbing.plotting.save_figure` (Agg backend, no version stamp: the same results
give the same bytes, and DVC sees no change on a rerun).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from imgclf.plumbing.plotting import DPI, save_figure  # it chooses the Agg backend before any figure is made
from imgclf.reporting.evaluation import most_confident_mistakes, samples_per_class

OVERLAY_OPACITY = 0.45
# (images, classes) -> one heatmap in [0, 1] per image, or None where it has none: explain.GradCam.heatmaps
Heatmaps = Callable[[np.ndarray, np.ndarray], Sequence[np.ndarray | None]]


def training_curves(history: Mapping[str, Sequence[float]], best_epoch: int, path: Path) -> None:
    """Loss and accuracy per epoch, train and validation side by side; the kept epoch marked."""
    figure, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for axis, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            if key in history:
                values = history[key]
                axis.plot(range(1, len(values) + 1), values, marker=".", label=label)
        axis.axvline(best_epoch, color="grey", linestyle=":", label=f"kept epoch ({best_epoch})")
        axis.set(xlabel="epoch", ylabel=metric, title=metric.capitalize())
        axis.grid(alpha=0.3)
        axis.legend()
    save_figure(figure, path)


def confusion_matrices(labels: np.ndarray, predicted: np.ndarray, class_names: Sequence[str], path: Path) -> None:
    """The confusion matrix as counts and normalised by true class (each row sums to 1)."""
    count = len(class_names)
    matrix = np.zeros((count, count), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    normalised = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    side = max(5.0, 0.45 * count + 2.5)
    figure, axes = plt.subplots(1, 2, figsize=(2 * side + 1, side), layout="constrained")
    for axis, values, title, text in ((axes[0], matrix, "Counts", "{:d}"),
                                      (axes[1], normalised, "Normalised by true class", "{:.2f}")):
        image = axis.imshow(values, cmap="Blues", vmin=0)
        axis.set(title=title, xlabel="predicted class", ylabel="true class",
                 xticks=range(count), yticks=range(count))
        axis.set_xticklabels(class_names, rotation=45, ha="right")
        axis.set_yticklabels(class_names)
        if count <= 20:  # numbers in cells stay readable up to about 20 classes
            threshold = values.max() / 2 if values.max() else 1
            for row in range(count):
                for column in range(count):
                    axis.text(column, row, text.format(values[row, column]), ha="center", va="center",
                              fontsize=8, color="white" if values[row, column] > threshold else "black")
        figure.colorbar(image, ax=axis, shrink=0.8)
    save_figure(figure, path)


def class_curves(rows: Sequence[tuple[str, int, float, float]], x_label: str, y_label: str, title: str,
                 path: Path, diagonal: bool = False) -> None:
    """One line per class from (class, point, x, y) rows, as written to metrics/roc.csv and friends."""
    figure, axis = plt.subplots(figsize=(6, 5.5), layout="constrained")
    names = list(dict.fromkeys(row[0] for row in rows))
    for name in names:
        points = np.array([(x, y) for row_name, _, x, y in rows if row_name == name])
        axis.plot(points[:, 0], points[:, 1], label=name)
    if diagonal:
        axis.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance")
    axis.set(xlabel=x_label, ylabel=y_label, title=title, xlim=(0, 1), ylim=(0, 1.02))
    axis.grid(alpha=0.3)
    if names:
        axis.legend(fontsize=8, loc="lower right" if diagonal else "lower left")
    save_figure(figure, path)


# An image grid's cell, in inches: the image with its caption (up to two lines) above it.
GRID_CELL_WIDTH, GRID_CELL_HEIGHT, GRID_CAPTION_HEIGHT, GRID_TITLE_HEIGHT = 1.9, 2.2, 0.45, 0.5


def image_grid(images: Sequence[np.ndarray], captions: Sequence[str], title: str, path: Path,
               columns: int = 8, caption_colors: Sequence[str] | None = None) -> None:
    """A grid of uint8 RGB images, each with a caption above it; an empty list gives a page saying so.

    The images are pasted into one picture of the figure's size (``figimage``: no axes, no
    resampling by matplotlib) and the captions are texts over it. An axes per image, as before, took
    3.5 s to save a grid of 80 (the samples grid): most of the evaluate stage on a small test split.
    """
    from PIL import Image

    columns = max(1, min(columns, len(images)))
    rows = max(1, -(-len(images) // columns))
    # At least 8 inches wide, so that the title fits above a short row.
    width = max(8.0, GRID_CELL_WIDTH * columns)
    height = GRID_CELL_HEIGHT * rows + GRID_TITLE_HEIGHT
    figure = plt.figure(figsize=(width, height))
    canvas = np.full((round(height * DPI), round(width * DPI), 3), 255, dtype=np.uint8)
    margin = (width - GRID_CELL_WIDTH * columns) / 2
    pad = 0.08
    box_width = round((GRID_CELL_WIDTH - 2 * pad) * DPI)
    box_height = round((GRID_CELL_HEIGHT - GRID_CAPTION_HEIGHT - 2 * pad) * DPI)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        left = margin + column * GRID_CELL_WIDTH + pad  # inches from the figure's left
        top = GRID_TITLE_HEIGHT + row * GRID_CELL_HEIGHT + GRID_CAPTION_HEIGHT + pad  # inches from its top
        scale = min(box_width / image.shape[1], box_height / image.shape[0])
        shown = Image.fromarray(np.asarray(image, dtype=np.uint8).squeeze()).convert("RGB").resize(
            (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))), Image.Resampling.NEAREST)
        x = round(left * DPI) + (box_width - shown.width) // 2
        y = round(top * DPI) + (box_height - shown.height) // 2
        canvas[y:y + shown.height, x:x + shown.width] = np.asarray(shown)
        figure.text((left + (GRID_CELL_WIDTH - 2 * pad) / 2) / width, 1 - (top - 0.04) / height, captions[index],
                    ha="center", va="bottom", fontsize=8, color=caption_colors[index] if caption_colors else "black")
    figure.figimage(canvas, 0, 0, origin="upper", zorder=0)
    if not images:
        figure.text(0.5, 0.5, "nothing to show", ha="center", va="center")
    figure.suptitle(title, y=1 - 0.15 / height, va="top")
    save_figure(figure, path)


# The pixels of some rows of a split: Split.read, or an array's __getitem__. Figures read only the
# images they show, so a test split of any size is never loaded for them.
ReadRows = Callable[[np.ndarray], np.ndarray]


def overlay(image: np.ndarray, heatmap: np.ndarray | None) -> np.ndarray:
    """The image with the heatmap laid over it in the jet colours (the image alone where there is none)."""
    if heatmap is None:
        return image
    coloured = matplotlib.colormaps["jet"](heatmap)[..., :3] * 255.0
    rgb = image if image.shape[-1] == 3 else np.repeat(image[..., :1], 3, axis=-1)
    return np.clip((1 - OVERLAY_OPACITY) * rgb + OVERLAY_OPACITY * coloured, 0, 255).round().astype(np.uint8)


def _shown(read: ReadRows, rows: Sequence[int], classes: np.ndarray, heatmaps: Heatmaps | None) -> list[np.ndarray]:
    """The images of ``rows``; with ``heatmaps``, each overlaid with where it shows its class."""
    images = read(np.asarray(rows, dtype=np.int64))
    if heatmaps is None or not len(rows):
        return list(images)
    return [overlay(image, heat) for image, heat in zip(images, heatmaps(images, classes), strict=True)]


HEATMAP_TITLE = "Where the model looked for its prediction (red: most), "


def mistakes_gallery(read: ReadRows, labels: np.ndarray, probabilities: np.ndarray,
                     class_names: Sequence[str], count: int, path: Path, heatmaps: Heatmaps | None = None) -> None:
    """The ``count`` most confident mistakes: each image with the predicted class, its confidence, the truth;
    with ``heatmaps``, overlaid with where the model saw the class it predicted."""
    predicted = probabilities.argmax(axis=1)
    chosen = most_confident_mistakes(labels, probabilities, count)
    title = f"the {len(chosen)} most confident mistakes: predicted class and confidence (true class)"
    image_grid(_shown(read, chosen, predicted[chosen], heatmaps),
               [f"{class_names[predicted[i]]} {probabilities[i, predicted[i]]:.2f}\n(is {class_names[labels[i]]})"
                for i in chosen],
               HEATMAP_TITLE + title if heatmaps else title[0].upper() + title[1:], path,
               caption_colors=["firebrick"] * len(chosen))


def samples_grid(read: ReadRows, labels: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str],
                 per_class: int, path: Path, heatmaps: Heatmaps | None = None) -> None:
    """A row of test images per class, captioned "true class: right" or with the wrong prediction in red;
    with ``heatmaps``, overlaid with where the model saw the class it predicted."""
    predicted = probabilities.argmax(axis=1)
    chosen = [index for indices in samples_per_class(labels, len(class_names), per_class) for index in indices]
    right = [predicted[i] == labels[i] for i in chosen]
    title = "test images per class (true class: prediction)"
    image_grid(_shown(read, chosen, predicted[chosen], heatmaps),
               [f"{class_names[labels[i]]}: {'right' if ok else class_names[predicted[i]]}"
                for i, ok in zip(chosen, right, strict=True)],
               HEATMAP_TITLE + title if heatmaps else title[0].upper() + title[1:], path, columns=per_class,
               caption_colors=["black" if ok else "firebrick" for ok in right])


def message_page(title: str, message: str, path: Path) -> None:
    """A figure that says why there is no picture (instead of a picture of noise)."""
    figure = plt.figure(figsize=(8, 2))
    figure.suptitle(title)
    figure.text(0.5, 0.45, "\n".join(textwrap.wrap(message, 90)), ha="center", va="center", fontsize=9)
    save_figure(figure, path)


def augmented_grid(originals: np.ndarray, variants: Sequence[np.ndarray], path: Path) -> None:
    """Each training image (a row) and random augmentations of it: what the model sees in training."""
    images, captions = [], []
    for index, original in enumerate(originals):
        images.append(original)
        captions.append("original")
        for number, variant in enumerate(variants, start=1):
            images.append(variant[index])
            captions.append(f"augmented {number}")
    image_grid(images, captions, "Training images as the model sees them (train.augment)", path,
               columns=1 + len(variants))

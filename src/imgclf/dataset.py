"""Read a split folder of resized images (``<split>/<class>/<file>.png``) into NumPy arrays.

Arrays, not a framework's dataset type, so that training and evaluation run unchanged on every
Keras backend. The resized images are small and of one size, so a whole split fits in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageSet:
    """Images of one split, their integer labels, file names and the class names labels index."""

    images: np.ndarray  # uint8, (count, height, width, 3)
    labels: np.ndarray  # int32, (count,)
    files: tuple[str, ...]  # "<class>/<file>", relative to the split folder
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)


def _read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def load_image_folder(root: Path, class_names: Sequence[str] | None = None) -> ImageSet:
    """Load ``root/<class>/*``; classes are the sorted folder names unless ``class_names`` is given.

    Given ``class_names`` (the training classes), a folder of another class is an error, since the
    model has no output for it.
    """
    root = Path(root)
    found = sorted(entry.name for entry in root.iterdir() if entry.is_dir()) if root.is_dir() else []
    if class_names is None:
        class_names = found
    unknown = sorted(set(found) - set(class_names))
    if unknown:
        raise ValueError(f"{root} has classes the model was not trained on: {', '.join(unknown)}")
    paths: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(class_names):
        class_folder = root / name
        class_files = sorted(class_folder.iterdir()) if class_folder.is_dir() else []
        paths.extend(class_files)
        labels.extend([index] * len(class_files))
    if not paths:
        raise ValueError(f"no images in {root}: run the resize stage first (dvc repro).")
    with ThreadPoolExecutor() as executor:  # Pillow releases the GIL while decoding
        arrays = list(executor.map(_read_rgb, paths))
    shapes = {array.shape for array in arrays}
    if len(shapes) != 1:
        raise ValueError(f"images in {root} differ in size ({sorted(shapes)[:3]}...): rerun the resize stage.")
    logger.info("loaded %d images of %s in %d classes from %s",
                len(arrays), "x".join(map(str, arrays[0].shape)), len(class_names), root)
    return ImageSet(
        images=np.stack(arrays),
        labels=np.asarray(labels, dtype=np.int32),
        files=tuple(f"{path.parent.name}/{path.name}" for path in paths),
        class_names=tuple(class_names),
    )

"""The resized images of one split as NumPy arrays, and the packed file the resize stage hands them on in.

Arrays, not a framework's dataset type, so that training and evaluation run unchanged on every
Keras backend. The resized images are small and of one size, so a whole split fits in memory.

A split is handed from the resize stage to train, evaluate and export as one uncompressed ``.npz``
(``data/resized/train.npz``...) rather than a folder of PNGs: DVC checks every file of an output
folder on every ``dvc repro``, and 60,000 files cost seconds each time (benchmarks/README.md).
``imgclf unpack`` writes a packed split out as ``<class>/<file>.png`` folders to look at.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from imgclf.errors import PipelineError
from imgclf.files import atomic_directory, naming_the_file

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageSet:
    """Images of one split, their integer labels, file names and the class names labels index."""

    images: np.ndarray  # uint8, (count, height, width, 3)
    labels: np.ndarray  # int32, (count,)
    files: tuple[str, ...]  # where each image came from: its path below data/raw (or its class folder)
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)


def save_image_set(path: Path, image_set: ImageSet) -> None:
    """Write ``image_set`` as one uncompressed ``.npz`` (strings as fixed-width text: no pickle)."""
    with naming_the_file(path), open(path, "wb") as handle:
        np.savez(handle, images=image_set.images, labels=image_set.labels,
                 files=np.asarray(image_set.files, dtype=str), class_names=np.asarray(image_set.class_names, dtype=str))


def load_image_set(path: Path, class_names: Sequence[str] | None = None) -> ImageSet:
    """Read a split written by :func:`save_image_set`.

    Labels index ``class_names`` when given (the training classes: a class outside them is an
    error, since the model has no output for it), else the sorted classes this split has images of.
    """
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path} does not exist: run the resize stage first (dvc repro).")
    with np.load(path, allow_pickle=False) as packed:
        images, labels = packed["images"], packed["labels"]
        files, stored_names = tuple(packed["files"].tolist()), packed["class_names"].tolist()
    present = sorted({stored_names[label] for label in np.unique(labels)})
    if class_names is None:
        class_names = present
    unknown = sorted(set(present) - set(class_names))
    if unknown:
        raise PipelineError(f"{path} has classes the model was not trained on: {', '.join(unknown)}")
    if not len(labels):
        raise PipelineError(f"no images in {path}: every file of this split was unusable "
                            "(see metrics/skipped_resize.csv).")
    index_of = {name: index for index, name in enumerate(class_names)}
    remap = np.asarray([index_of.get(name, -1) for name in stored_names], dtype=np.int32)
    logger.info("loaded %d images of %s in %d classes from %s",
                len(labels), "x".join(map(str, images.shape[1:])), len(class_names), path)
    return ImageSet(images=images, labels=remap[labels], files=files, class_names=tuple(class_names))


def write_image_folder(image_set: ImageSet, folder: Path) -> int:
    """Write ``image_set`` as ``folder/<class>/<name>.png`` (a new folder); return how many images.

    Each image is named after its source file's stem; when two sources of a class share a stem, the
    later one is named after its whole source path. An existing folder is refused rather than mixed
    with other images.
    """
    folder = Path(folder)
    if folder.exists():
        raise PipelineError(f"{folder} already exists: name a new folder to unpack into.")
    taken: set[tuple[int, str]] = set()
    with atomic_directory(folder) as staging:
        for pixels, label, source in zip(image_set.images, image_set.labels, image_set.files, strict=True):
            name = f"{PurePosixPath(source).stem}.png"
            if (label, name) in taken:
                name = f"{source.replace('/', '__').replace('.', '_')}.png"
            taken.add((label, name))
            destination = staging / image_set.class_names[label] / name
            destination.parent.mkdir(exist_ok=True)
            Image.fromarray(pixels).save(destination, format="PNG")
    return len(image_set)

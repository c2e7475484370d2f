"""CIFAR-10 and CIFAR-100 from their official *binary* archives.

The binary versions are fixed-size records read with NumPy, so no pickle is ever loaded (the
"python" versions are pickles, which can run code). Record layout, from the dataset's page:

- CIFAR-10 (``cifar-10-batches-bin/data_batch_{1..5}.bin``, ``test_batch.bin``): 1 label byte,
  then 3,072 pixel bytes: the 1,024 red values of the 32x32 image row by row, then green, then blue.
  Class names are the lines of ``batches.meta.txt``.
- CIFAR-100 (``cifar-100-binary/train.bin``, ``test.bin``): a coarse label byte, a fine label byte,
  then the same 3,072 pixel bytes. Names in ``coarse_label_names.txt`` / ``fine_label_names.txt``.
"""

from __future__ import annotations

import logging
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image
from tqdm import tqdm

from imgclf.plumbing.errors import PipelineError

logger = logging.getLogger(__name__)

PIXELS_PER_IMAGE = 32 * 32 * 3


class CifarError(PipelineError):
    """The archive does not hold the CIFAR binary files in their official layout."""


@dataclass(frozen=True)
class CifarSpec:
    url: str
    md5: str
    folder: str  # the folder inside the archive
    batches: dict[str, tuple[str, ...]]  # split -> batch file names
    label_bytes: int


CIFAR = {
    "cifar10": CifarSpec(
        url="https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
        md5="c32a1d4ab5d03f1284b67883e8d87530",
        folder="cifar-10-batches-bin",
        batches={"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)},
        label_bytes=1,
    ),
    "cifar100": CifarSpec(
        url="https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
        md5="03b5dce01913d631647c71ecec9e9cb8",
        folder="cifar-100-binary",
        batches={"train": ("train.bin",), "test": ("test.bin",)},
        label_bytes=2,
    ),
}


def parse_records(data: bytes, label_bytes: int, label_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels (count,) and images (count, 32, 32, 3) uint8 from a batch file's bytes."""
    record_size = label_bytes + PIXELS_PER_IMAGE
    if len(data) % record_size:
        raise CifarError(f"a batch of {len(data):,} bytes is not a whole number of {record_size}-byte records: "
                         "the archive is damaged.")
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, record_size)
    images = records[:, label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return records[:, label_index].copy(), np.ascontiguousarray(images)


def label_names_file(name: str, label_mode: str) -> str:
    if name == "cifar10":
        return "batches.meta.txt"
    return f"{label_mode}_label_names.txt"


def read_archive(archive: Path, name: str, label_mode: str = "fine") -> Iterator[tuple[str, str, np.ndarray]]:
    """Yield (split, class name, image) for every record of the archive, in file order."""
    spec = CIFAR[name]
    label_index = 0 if name == "cifar10" or label_mode == "coarse" else 1
    wanted = {f"{spec.folder}/{label_names_file(name, label_mode)}",
              *(f"{spec.folder}/{batch}" for batches in spec.batches.values() for batch in batches)}
    contents: dict[str, bytes] = {}
    with tarfile.open(archive) as tar:
        for member in tar:
            path = str(PurePosixPath(member.name))
            extracted = tar.extractfile(member) if member.isfile() and path in wanted else None
            if extracted is not None:
                contents[path.split("/", 1)[1]] = extracted.read()
    missing = sorted(path.split("/", 1)[1] for path in wanted if path.split("/", 1)[1] not in contents)
    if missing:
        raise CifarError(f"{archive} lacks {', '.join(missing)} in {spec.folder}/: it is not the official "
                         f"{name} binary archive.")
    class_names = [line.strip() for line in contents[label_names_file(name, label_mode)].decode().splitlines()
                   if line.strip()]
    for split, batches in spec.batches.items():
        for batch in batches:
            labels, images = parse_records(contents[batch], spec.label_bytes, label_index)
            if labels.size and labels.max() >= len(class_names):
                raise CifarError(f"{batch} has label {labels.max()} but only {len(class_names)} class names.")
            for label, image in zip(labels, images, strict=True):
                yield split, class_names[label], image


def write_images(archive: Path, name: str, label_mode: str, destination: Path) -> int:
    """Write every image losslessly as ``destination/<split>/<class>/<number>.png``; return the count."""
    counts = {"train": 0, "test": 0}
    for split, class_name, image in tqdm(read_archive(archive, name, label_mode), desc=f"writing {name}",
                                         unit="image", disable=None):
        folder = destination / split / class_name
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{counts[split]:05d}.png", compress_level=1)
        counts[split] += 1
    logger.info("wrote %d training and %d test images of %s", counts["train"], counts["test"], name)
    return counts["train"] + counts["test"]

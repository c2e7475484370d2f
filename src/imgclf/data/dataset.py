"""The resized images of one split, as the resize stage hands them on: a folder of shards.

A split is a folder (``data/resized/train/``...) of a few large files, not a file per image (DVC
checks every file of an output folder on every ``dvc repro``: 60,000 files cost seconds each time,
benchmarks/README.md) and not one file holding the whole split (a stage would have to load it):

    split.json          how many images, their shape, the class names, each shard's count and SHA-256
    labels.npy          int32 (count,): each image's index into the class names
    files.npy           text (count,): where each image came from, its path below data/raw
    images-00000.npy    uint8 (images, height, width, 3): about ``resize.shard_mb`` of pixels each
    images-00001.npy    ...

The shards are plain NumPy ``.npy`` files: fixed-size rows, no compression, no pickle. Image ``i``
of a shard starts at a known byte offset, so a batch in any order is read with one positioned read
per image (:meth:`PackedSplit.read`), on every Keras backend, with nothing but NumPy; and
``np.load(shard, mmap_mode="r")`` opens one to look at. Reading with ``os.preadv`` rather than
through a memory map keeps what was read out of the process's resident memory: the page cache
holds it, and gives it back when the machine needs it.

Labels and paths (a few bytes per image) are held in memory; pixels never are, past a batch.
:class:`ImageSet` is a split in memory, for tests, benchmarks and the few images a figure shows.
``imgclf unpack`` writes a split out as ``<class>/<file>.png`` folders to look at.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Protocol

import numpy as np
from PIL import Image

from imgclf.plumbing.errors import PipelineError
from imgclf.plumbing.files import atomic_directory, naming_the_file

logger = logging.getLogger(__name__)

SPLIT_FILE = "split.json"
LABELS_FILE = "labels.npy"
FILES_FILE = "files.npy"
FORMAT_VERSION = 1
DEFAULT_SHARD_BYTES = 256 * 2**20
SHARD_HEADER_BYTES = 128


def shard_name(index: int) -> str:
    return f"images-{index:05d}.npy"


class Split(Protocol):
    """What training and evaluation need of a split, in memory (:class:`ImageSet`) or on disk
    (:class:`PackedSplit`): its labels, and the pixels of any rows, read when asked for."""

    @property
    def labels(self) -> np.ndarray: ...

    @property
    def class_names(self) -> tuple[str, ...]: ...

    def __len__(self) -> int: ...

    @property
    def image_shape(self) -> tuple[int, int, int]: ...

    @property
    def digest(self) -> str: ...

    def read(self, rows: np.ndarray) -> np.ndarray: ...

    def blocks(self, size: int) -> Iterator[np.ndarray]: ...


@dataclass(frozen=True)
class ImageSet:
    """Images of one split in memory, their integer labels, file names and the class names labels index."""

    images: np.ndarray  # uint8, (count, height, width, 3)
    labels: np.ndarray  # int32, (count,)
    files: tuple[str, ...]  # where each image came from: its path below data/raw (or its class folder)
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    @property
    def digest(self) -> str:
        digest = hashlib.sha256(str(self.images.shape).encode())
        digest.update(np.ascontiguousarray(self.images).data)
        digest.update(np.ascontiguousarray(self.labels, dtype=np.int32).data)
        return digest.hexdigest()

    def read(self, rows: np.ndarray) -> np.ndarray:
        return self.images[rows]

    def blocks(self, size: int) -> Iterator[np.ndarray]:
        for start in range(0, len(self), size):
            yield self.images[start:start + size]


def _save_npy(path: Path, array: np.ndarray) -> None:
    """``np.save``, but through Python's own file writes: NumPy's raise an OSError without an errno
    on a full disk, which :func:`imgclf.plumbing.stage.run_stage` could not tell from a bug."""
    array = np.ascontiguousarray(array)
    with naming_the_file(path), open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, np.lib.format.header_data_from_array_1_0(array))
        handle.write(array.data.cast("B"))


def _shard_header(count: int, image_shape: tuple[int, ...]) -> bytes:
    """An ``.npy`` (format 1.0) header of exactly :data:`SHARD_HEADER_BYTES`: written first with a count
    of 0, then again over itself with the final count, so a shard is written as its images arrive."""
    text = repr({"descr": "|u1", "fortran_order": False, "shape": (int(count), *map(int, image_shape))})
    length = SHARD_HEADER_BYTES - 10  # after the magic string, the version and the length field
    if len(text) >= length:
        raise ValueError(f"image shape {image_shape} is too long for a shard header")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", length) + (text.ljust(length - 1) + "\n").encode("latin1")


class ShardWriter:
    """Writes a split's folder as its images arrive, straight into the open shard: what it holds is
    a label and a path per image, never the pixels of a shard.

    ``add`` the images in order, then ``close`` to finish the last shard and write the labels, paths
    and ``split.json``. The folder should be a staging folder (:func:`imgclf.plumbing.files.atomic_directory`):
    a split is complete only once ``split.json`` is written, and readers refuse a folder without one.
    """

    def __init__(self, folder: Path, image_shape: tuple[int, int, int], class_names: Sequence[str],
                 shard_bytes: int = DEFAULT_SHARD_BYTES) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.image_shape = tuple(image_shape)
        self.class_names = tuple(class_names)
        self.per_shard = max(1, shard_bytes // int(np.prod(self.image_shape)))
        self._shard: BinaryIO | None = None  # the shard being written
        self._digest = hashlib.sha256()
        self._filled = 0
        self._labels: list[int] = []
        self._files: list[str] = []
        self._shards: list[dict[str, Any]] = []

    @property
    def _shard_path(self) -> Path:
        return self.folder / shard_name(len(self._shards))

    def add(self, pixels: np.ndarray, label: int, file: str) -> None:
        if pixels.shape != self.image_shape:
            raise ValueError(f"an image of {pixels.shape} in a split of {self.image_shape}: {file}")
        with naming_the_file(self._shard_path):
            if self._shard is None:
                self._shard = open(self._shard_path, "wb")  # noqa: SIM115  (closed by _finish_shard)
                self._shard.write(_shard_header(0, self.image_shape))
                self._digest, self._filled = hashlib.sha256(), 0
            data = np.ascontiguousarray(pixels, dtype=np.uint8).data.cast("B")
            self._shard.write(data)
            self._digest.update(data)
        self._filled += 1
        self._labels.append(label)
        self._files.append(file)
        if self._filled == self.per_shard:
            self._finish_shard()

    def add_all(self, image_set: ImageSet) -> None:
        for pixels, label, file in zip(image_set.images, image_set.labels, image_set.files, strict=True):
            self.add(pixels, int(label), file)

    def _finish_shard(self) -> None:
        if self._shard is None:
            return
        with naming_the_file(self._shard_path):
            self._shard.seek(0)
            self._shard.write(_shard_header(self._filled, self.image_shape))
            self._shard.close()
        self._shard = None
        self._shards.append({"file": shard_name(len(self._shards)), "images": self._filled,
                             "sha256": self._digest.hexdigest()})

    def close(self) -> int:
        """Finish the last shard, write the split's index; return how many images the split holds."""
        self._finish_shard()
        _save_npy(self.folder / LABELS_FILE, np.asarray(self._labels, dtype=np.int32))
        _save_npy(self.folder / FILES_FILE, np.asarray(self._files, dtype=str))
        index = {"format": FORMAT_VERSION, "images": len(self._labels), "image_shape": list(self.image_shape),
                 "class_names": list(self.class_names), "shards": self._shards}
        with naming_the_file(self.folder / SPLIT_FILE):
            (self.folder / SPLIT_FILE).write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
        return len(self._labels)


def save_image_set(folder: Path, image_set: ImageSet, shard_bytes: int = DEFAULT_SHARD_BYTES) -> None:
    """Write an in-memory split as a split folder (a new one, complete or not at all)."""
    with atomic_directory(folder) as staging:
        writer = ShardWriter(staging, image_set.image_shape, image_set.class_names, shard_bytes)
        writer.add_all(image_set)
        writer.close()


def _data_offset(path: Path, count: int, image_shape: tuple[int, ...]) -> int:
    """Where the pixels of a shard start, after checking its header says what ``split.json`` says."""
    with open(path, "rb") as handle:
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}[np.lib.format.read_magic(handle)]
        shape, fortran_order, dtype = read_header(handle)
        if shape != (count, *image_shape) or fortran_order or dtype != np.uint8:
            raise PipelineError(f"{path} holds {dtype} {shape}, not the {count} images of {image_shape} its "
                                f"{SPLIT_FILE} lists: the split is damaged; run the resize stage again "
                                "(dvc repro --force resize).")
        return handle.tell()


class PackedSplit:
    """A split folder opened for reading: labels and paths in memory, pixels read when asked for.

    Labels index ``class_names`` when given (the training classes: a class outside them is an error,
    since the model has no output for it), else the sorted classes this split has images of. Safe
    to read from several threads at once (positioned reads share no file offset).
    """

    def __init__(self, folder: Path, class_names: Sequence[str] | None = None) -> None:
        self.folder = Path(folder)
        index_file = self.folder / SPLIT_FILE
        if not index_file.is_file():
            if self.folder.suffix == ".npz" or (self.folder.with_suffix(".npz")).is_file():
                raise PipelineError(f"{self.folder} is a packed split of an older version of this project: "
                                    "run the resize stage again (dvc repro resize).")
            raise PipelineError(f"{self.folder} is not a resized split (no {SPLIT_FILE}): run the resize stage "
                                "first (dvc repro).")
        index = json.loads(index_file.read_text(encoding="utf-8"))
        if index.get("format") != FORMAT_VERSION:
            raise PipelineError(f"{index_file} is of format {index.get('format')}, not {FORMAT_VERSION}: "
                                "run the resize stage again (dvc repro --force resize).")
        self._index_bytes = index_file.read_bytes()
        self._image_shape: tuple[int, int, int] = tuple(index["image_shape"])
        self.image_bytes = int(np.prod(self._image_shape))
        counts = [shard["images"] for shard in index["shards"]]
        self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)  # shard i: rows starts[i]..
        self._descriptors: list[int] = []
        self._offsets: list[int] = []
        for shard, count in zip(index["shards"], counts, strict=True):
            path = self.folder / shard["file"]
            self._offsets.append(_data_offset(path, count, self._image_shape))
            self._descriptors.append(os.open(path, os.O_RDONLY))
        stored_labels = np.load(self.folder / LABELS_FILE, allow_pickle=False)
        self._files = np.load(self.folder / FILES_FILE, allow_pickle=False, mmap_mode="r")
        stored_names = index["class_names"]
        present = sorted({stored_names[label] for label in np.unique(stored_labels)})
        if class_names is None:
            class_names = present
        unknown = sorted(set(present) - set(class_names))
        if unknown:
            raise PipelineError(f"{self.folder} has classes the model was not trained on: {', '.join(unknown)}")
        if not len(stored_labels):
            raise PipelineError(f"no images in {self.folder}: every file of this split was unusable "
                                "(see metrics/skipped_resize.csv).")
        index_of = {name: position for position, name in enumerate(class_names)}
        remap = np.asarray([index_of.get(name, -1) for name in stored_names], dtype=np.int32)
        self.labels: np.ndarray = remap[stored_labels]
        self.class_names: tuple[str, ...] = tuple(class_names)
        logger.info("opened %d images of %s in %d classes, %d shards, in %s", len(self.labels),
                    "x".join(map(str, self._image_shape)), len(self.class_names), len(counts), self.folder)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self._image_shape

    @property
    def digest(self) -> str:
        """The SHA-256 of ``split.json``, which holds every shard's: it changes whenever a pixel does."""
        return hashlib.sha256(self._index_bytes + self.labels.tobytes()).hexdigest()

    @property
    def files(self) -> Sequence[str]:
        """Each image's source path (read from ``files.npy`` as they are looked at)."""
        return self._files

    def _read_run(self, start: int, out: np.ndarray) -> None:
        """Rows ``start`` .. ``start + len(out)`` into ``out``, one positioned read per shard they span."""
        row, filled = start, 0
        while filled < len(out):
            shard = int(np.searchsorted(self._starts, row, side="right")) - 1
            take = min(len(out) - filled, int(self._starts[shard + 1]) - row)
            view = out[filled:filled + take].data.cast("B")
            offset = self._offsets[shard] + (row - int(self._starts[shard])) * self.image_bytes
            while view:  # a positioned read may return less than asked for
                got = os.preadv(self._descriptors[shard], [view], offset)
                if got == 0:
                    raise PipelineError(f"{self.folder / shard_name(shard)} ends early: the split is damaged; "
                                        "run the resize stage again (dvc repro --force resize).")
                view, offset = view[got:], offset + got
            row, filled = row + take, filled + take

    def read(self, rows: np.ndarray) -> np.ndarray:
        """The pixels of ``rows`` (any order, repeats allowed), as a new uint8 array."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), *self._image_shape), dtype=np.uint8)
        if not len(rows):
            return out
        if rows.min() < 0 or rows.max() >= len(self):
            raise IndexError(f"rows outside 0..{len(self) - 1} of {self.folder}")
        # runs of consecutive rows are read in one call: an evaluation reads whole blocks
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for begin, end in zip(np.concatenate([[0], breaks]), np.concatenate([breaks, [len(rows)]]), strict=True):
            self._read_run(int(rows[begin]), out[begin:end])
        return out

    def blocks(self, size: int) -> Iterator[np.ndarray]:
        """The whole split in order, ``size`` images at a time."""
        for start in range(0, len(self), size):
            yield self.read(np.arange(start, min(start + size, len(self))))

    def close(self) -> None:
        for descriptor in self._descriptors:
            os.close(descriptor)
        self._descriptors = []

    def __enter__(self) -> PackedSplit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if hasattr(self, "_descriptors"):  # not when __init__ failed before opening any
            self.close()


def open_split(folder: Path, class_names: Sequence[str] | None = None) -> PackedSplit:
    """Open the split folder the resize stage wrote (see :class:`PackedSplit`)."""
    return PackedSplit(folder, class_names)


def load_image_set(folder: Path, class_names: Sequence[str] | None = None) -> ImageSet:
    """A whole split in memory: for tests, benchmarks and small splits; the stages stream instead."""
    with open_split(folder, class_names) as split:
        return ImageSet(split.read(np.arange(len(split))), split.labels, tuple(split.files), split.class_names)


def write_image_folder(split: PackedSplit | ImageSet, folder: Path, block: int = 256) -> int:
    """Write ``split`` as ``folder/<class>/<name>.png`` (a new folder); return how many images.

    Each image is named after its source file's stem; when two sources of a class share a stem, the
    later one is named after its whole source path. An existing folder is refused rather than mixed
    with other images. Read ``block`` images at a time: a split of any size unpacks in little memory.
    """
    folder = Path(folder)
    if folder.exists():
        raise PipelineError(f"{folder} already exists: name a new folder to unpack into.")
    taken: set[tuple[int, str]] = set()
    with atomic_directory(folder) as staging:
        for start, pixels_block in zip(range(0, len(split), block), split.blocks(block), strict=True):
            for offset, pixels in enumerate(pixels_block):
                label, source = int(split.labels[start + offset]), str(split.files[start + offset])
                name = f"{PurePosixPath(source).stem}.png"
                if (label, name) in taken:
                    name = f"{source.replace('/', '__').replace('.', '_')}.png"
                taken.add((label, name))
                destination = staging / split.class_names[label] / name
                destination.parent.mkdir(exist_ok=True)
                Image.fromarray(pixels).save(destination, format="PNG")
    return len(split)

"""The sections of params.yaml that the data path reads: ``data`` (download), ``split`` and ``resize``.

How they are parsed and checked: :mod:`imgclf.plumbing.params`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from imgclf.plumbing.params import Section, fail, require_fraction, require_non_negative, require_positive

SourceName = Literal["digits", "folder", "csv", "cifar10", "cifar100", "kaggle"]
ResizeMode = Literal["stretch", "pad", "crop"]


@dataclass(frozen=True)
class KaggleParams(Section):
    """Which Kaggle competition or dataset to download (``data.kaggle``); set one of the two."""

    competition: str | None = None  # e.g. dogs-vs-cats
    dataset: str | None = None  # owner/name, e.g. tongpython/cat-and-dog


@dataclass(frozen=True)
class CsvParams(Section):
    """Columns of the labels CSV of ``source: csv`` (``data.csv``)."""

    file_column: str = "id"
    label_column: str = "label"
    # Added to file names that have no extension, as in Kaggle label files ("a3f9" -> "a3f9.tif").
    extension: str | None = None


@dataclass(frozen=True)
class DataParams(Section):
    """Where the download stage gets its images (``data`` in params.yaml)."""

    key = "data"

    source: SourceName = "digits"
    # folder and csv: the folder of images. Relative paths are relative to the repository.
    path: str | None = None
    # cifar10, cifar100: a mirror URL or file:// path of the official binary archive.
    url: str | None = None
    # The archive's expected checksum as "md5:<hex>" or "sha256:<hex>"; null: the official one.
    checksum: str | None = None
    # Where downloaded archives are kept and reused; null: ~/.keras/datasets.
    cache_dir: str | None = None
    # kaggle: an archive already on disk (no API, no credentials needed).
    archive: str | None = None
    label_mode: Literal["fine", "coarse"] = "fine"  # cifar100's 100 fine or 20 coarse classes
    # kaggle: a regular expression whose first group is the label in a file name (cat.123.jpg).
    label_pattern: str = r"^([A-Za-z]+)[._-]\d+\."
    labels_csv: str | None = None  # csv: the CSV of file names and labels
    timeout: float = 60.0  # seconds without a byte before a download attempt is abandoned
    retries: int = 3  # further attempts after a failed download; each resumes the partial file
    max_unpacked_gb: float = 20.0  # archives that unpack to more are refused (archive bombs)
    kaggle: KaggleParams = field(default_factory=KaggleParams)
    csv: CsvParams = field(default_factory=CsvParams)

    def validate(self, section: str) -> None:
        if self.source == "folder" and not self.path:
            fail(f"{section}.path", self.path,
                  "data.source 'folder' needs data.path, the folder that holds one subfolder per class")
        if self.source == "csv" and not (self.path and self.labels_csv):
            fail(f"{section}.path / {section}.labels_csv", (self.path, self.labels_csv),
                  "data.source 'csv' needs data.path (the images) and data.labels_csv (file,label rows)")
        if self.source == "kaggle":
            choices = {"archive": self.archive, "kaggle.competition": self.kaggle.competition,
                       "kaggle.dataset": self.kaggle.dataset}
            given = [name for name, value in choices.items() if value]
            if len(given) != 1:
                fail(f"{section}.archive / {section}.kaggle", given or None,
                      "data.source 'kaggle' needs exactly one of data.archive, data.kaggle.competition, "
                      "data.kaggle.dataset")
        if self.kaggle.dataset is not None and self.kaggle.dataset.count("/") != 1:
            fail(f"{section}.kaggle.dataset", self.kaggle.dataset, "write it as owner/name")
        if self.checksum is not None:
            algorithm, _, digest = self.checksum.partition(":")
            lengths = {"md5": 32, "sha256": 64}
            if algorithm not in lengths or len(digest) != lengths[algorithm] or not _is_hex(digest):
                fail(f"{section}.checksum", self.checksum, "write md5:<32 hex digits> or sha256:<64 hex digits>")
        try:
            if re.compile(self.label_pattern).groups < 1:
                fail(f"{section}.label_pattern", self.label_pattern,
                      "put the label in a group, e.g. ^([A-Za-z]+)\\.\\d+")
        except re.error as error:
            fail(f"{section}.label_pattern", self.label_pattern, f"not a regular expression ({error})")
        require_positive(f"{section}.timeout", self.timeout)
        require_non_negative(f"{section}.retries", self.retries)
        require_positive(f"{section}.max_unpacked_gb", self.max_unpacked_gb)


def _is_hex(text: str) -> bool:
    return all(character in "0123456789abcdefABCDEF" for character in text)


@dataclass(frozen=True)
class SplitParams(Section):
    """Stratified train/validation/test split (``split``)."""

    key = "split"

    seed: int = 42
    # Fractions of all images; a source's own test split is kept and then `test` is unused.
    val: float = 0.15
    test: float = 0.15
    # Drop files whose bytes repeat another file's, so no image sits in two splits (test leakage).
    deduplicate: bool = True
    # Also the same picture re-encoded or resized: perceptual hashes (256 bits) at most this many bits
    # apart (src/imgclf/data/near_duplicates.py); null: byte-identical copies only.
    near_duplicate_bits: int | None = 8

    def validate(self, section: str) -> None:
        require_fraction(f"{section}.val", self.val)
        require_fraction(f"{section}.test", self.test)
        if self.near_duplicate_bits is not None and not 0 <= self.near_duplicate_bits <= 64:
            fail(f"{section}.near_duplicate_bits", self.near_duplicate_bits,
                  "allowed: 0 to 64 bits of the 256 (unrelated pictures differ in about 128), or null for "
                  "byte-identical copies only")
        if self.val + self.test >= 1.0:
            fail(f"{section}.val + {section}.test", self.val + self.test,
                  "the two fractions must leave images for training: keep their sum below 1")


@dataclass(frozen=True)
class ResizeParams(Section):
    """How images are brought to the training size (``resize``)."""

    key = "resize"

    size: tuple[int, int] = (32, 32)  # height, width
    mode: ResizeMode = "stretch"
    # Images whose header claims more pixels are refused before decoding (decompression bombs).
    max_megapixels: float = 200.0
    # Each split is written in shards of about this many MB of pixels; the resize stage holds one
    # shard in memory, and DVC tracks a file per shard (src/imgclf/data/dataset.py).
    shard_mb: float = 256.0

    def validate(self, section: str) -> None:
        require_positive(f"{section}.max_megapixels", self.max_megapixels)
        require_positive(f"{section}.shard_mb", self.shard_mb)
        if len(self.size) != 2 or min(self.size) <= 0:
            fail(f"{section}.size", list(self.size),
                  "give [height, width] as two whole numbers greater than 0, e.g. [32, 32]")


"""The manifests the stages hand on (data/raw_index.csv, data/split.csv): written, read back, refused when foreign."""

from __future__ import annotations

import hashlib

import pytest
from PIL import Image

from imgclf.data.manifest import (
    ManifestEntry,
    ManifestError,
    index_folder,
    labelled_files,
    read_manifest,
    write_manifest,
)


def test_index_folder_lists_every_image_with_class_own_split_and_digest(tmp_path):
    for subset, label in (("train", "cat"), ("test", "cat"), ("train", "dog")):
        (tmp_path / "raw" / subset / label).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4), (len(subset), len(label), 0)).save(tmp_path / "raw" / subset / label / "1.png")
    entries = index_folder(tmp_path / "raw", tmp_path / "final")
    digest = hashlib.sha256((tmp_path / "raw/train/dog/1.png").read_bytes()).hexdigest()
    assert [(entry.file.removeprefix(f"{tmp_path}/"), entry.label, entry.subset) for entry in entries] == [
        ("final/test/cat/1.png", "cat", "test"), ("final/train/cat/1.png", "cat", "train"),
        ("final/train/dog/1.png", "dog", "train")]
    assert entries[2].sha256 == digest
    assert [item.subset for item in labelled_files(entries)] == ["test", "train", "train"]


def test_a_manifest_reads_back_as_written(tmp_path):
    entries = [ManifestEntry("data/raw/cat/a,b.jpg", "cat", "", "00"), ManifestEntry("data/raw/dog/1.jpg", "dog",
                                                                                      "val", "ff")]
    write_manifest(tmp_path / "m.csv", entries)
    assert read_manifest(tmp_path / "m.csv", "split") == entries
    assert labelled_files(entries)[0].subset is None  # no split of its own


@pytest.mark.parametrize(("content", "message"), [
    (None, "does not exist: run the split stage first"),
    ("file,label\ndata/raw/cat/0.jpg,cat\n", "not written by this version of the split stage; run `dvc repro`"),
    ("file,label,subset,sha256\ndata/raw/cat/0.jpg,cat,holdout,00\n", "has subset 'holdout'; allowed: train, val"),
])
def test_a_missing_or_foreign_manifest_says_what_to_run(tmp_path, content, message):
    if content is not None:
        (tmp_path / "m.csv").write_text(content)
    with pytest.raises(ManifestError, match=message):
        read_manifest(tmp_path / "m.csv", "split")

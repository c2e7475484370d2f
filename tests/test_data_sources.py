"""CIFAR, Kaggle and CSV sources on archives and folders the tests build in the official layouts."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgclf.data import downloads
from imgclf.data.cifar import read_archive
from imgclf.data.downloads import DownloadError
from imgclf.data.kaggle import http_advice
from imgclf.data.layout import scan_folder
from imgclf.data.params import CsvParams, DataParams, KaggleParams
from imgclf.data.sources import download_source
from tests.helpers import (
    FileServer,
    cifar_pixels,
    jpeg_bytes,
    make_project,
    run,
    set_params,
    stage_command,
    write_cifar_archive,
    write_dogs_vs_cats_zip,
)


def md5(path: Path) -> str:
    return "md5:" + hashlib.md5(path.read_bytes()).hexdigest()


def raw_counts(root: Path) -> Counter:
    files, _ = scan_folder(root)
    return Counter((item.subset, item.label) for item in files)


# --- CIFAR ---------------------------------------------------------------------------------------

def test_cifar10_records_become_the_right_classes_and_pixels(tmp_path):
    archive = write_cifar_archive(tmp_path / "cifar-10-binary.tar.gz", "cifar10", train_per_batch=4, test_count=6)
    records = list(read_archive(archive, "cifar10"))
    assert Counter(split for split, _, _ in records) == {"train": 20, "test": 6}
    for index, (_, label, image) in enumerate(records):
        assert label == f"class{index % 10}"
        # planar R, G, B in the file -> (height, width, channel) in the image
        np.testing.assert_array_equal(image, cifar_pixels(index).transpose(1, 2, 0))


@pytest.mark.parametrize(("label_mode", "first_labels"), [("fine", ["fine0", "fine1", "fine2"]),
                                                          ("coarse", ["coarse0", "coarse1", "coarse2"])])
def test_cifar100_fine_and_coarse_labels(tmp_path, label_mode, first_labels):
    archive = write_cifar_archive(tmp_path / "cifar-100-binary.tar.gz", "cifar100", train_per_batch=25, test_count=5)
    records = list(read_archive(archive, "cifar100", label_mode))
    assert [label for _, label, _ in records[:3]] == first_labels
    assert len(records) == 30


def test_cifar_from_an_http_mirror_writes_lossless_class_folders_with_the_official_split(tmp_path, monkeypatch):
    archive = write_cifar_archive(tmp_path / "cifar-10-binary.tar.gz", "cifar10", train_per_batch=2, test_count=10)
    server = FileServer(archive.read_bytes(), drop_first=True)
    monkeypatch.setattr(downloads, "RETRY_DELAY_SECONDS", 0.0)
    try:
        params = DataParams(source="cifar10", url=server.url("cifar-10-binary.tar.gz"), checksum=md5(archive),
                            cache_dir=str(tmp_path / "cache"))
        download_source(params, tmp_path / "raw", tmp_path)
    finally:
        server.close()
    assert server.requests[1] is not None  # the dropped transfer was resumed
    counts = raw_counts(tmp_path / "raw")
    assert sum(n for (split, _), n in counts.items() if split == "train") == 10
    assert sum(n for (split, _), n in counts.items() if split == "test") == 10
    assert np.array_equal(np.asarray(Image.open(tmp_path / "raw/test/class0/00000.png")),
                          cifar_pixels(10).transpose(1, 2, 0))  # the 11th record is the first test image
    assert (tmp_path / "cache" / "cifar-10-binary.tar.gz").exists()  # kept for the next run


def test_a_wrong_archive_for_the_official_checksum_is_refused(tmp_path):
    archive = write_cifar_archive(tmp_path / "cifar-10-binary.tar.gz", "cifar10", train_per_batch=1, test_count=1)
    params = DataParams(source="cifar10", url=archive.as_uri())  # official md5, a test-built archive
    with pytest.raises(DownloadError, match="expected c32a1d4ab5d03f1284b67883e8d87530"):
        download_source(params, tmp_path / "raw", tmp_path)


@pytest.mark.parametrize("failure", ["404", "500", "checksum"])
def test_a_failed_download_ends_the_stage_with_its_error_and_no_raw_data(tmp_path, failure):
    project = make_project(tmp_path / "project", heatmaps=False)
    archive = write_cifar_archive(tmp_path / "cifar-10-binary.tar.gz", "cifar10", train_per_batch=1, test_count=1)
    server = FileServer(archive.read_bytes(), status=None if failure == "checksum" else int(failure))
    try:
        set_params(project, **{"data.source": "cifar10", "data.url": server.url("cifar-10-binary.tar.gz"),
                               "data.retries": 1, "data.cache_dir": str(tmp_path / "cache")})
        result = run(stage_command("download"), project, check=False)
    finally:
        server.close()
    assert result.returncode == 1
    expected = "expected c32a1d4ab5d03f1284b67883e8d87530; the file was deleted" if failure == "checksum" \
        else f"HTTP {failure}"
    assert expected in result.stdout and "Traceback" not in result.stdout
    assert not (project / "data" / "raw").exists()
    assert [path.name for path in (project / "data").iterdir()] == []  # no staging or scratch left
    cache = tmp_path / "cache"
    assert not cache.exists() or not any(cache.iterdir())  # no partial or unverified download kept


# --- Kaggle --------------------------------------------------------------------------------------

def kaggle_subprocess(tmp_path: Path, extra_env: dict[str, str]) -> subprocess.CompletedProcess:
    """Our Kaggle download with the real kaggle package, in a clean HOME without credentials.

    Every request goes to a proxy on 127.0.0.1:9, where nothing listens: nothing leaves this machine,
    not even a DNS lookup of kaggle.com (the proxy would resolve it).
    """
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("KAGGLE_") and key.lower() not in ("no_proxy", "all_proxy")}
    proxy = "http://127.0.0.1:9"
    env.update(HOME=str(tmp_path), HTTPS_PROXY=proxy, https_proxy=proxy, HTTP_PROXY=proxy, http_proxy=proxy,
               **extra_env)
    code = ("import logging, sys; logging.basicConfig(level=logging.DEBUG)\n"
            "from pathlib import Path\nfrom imgclf.data.kaggle import download\n"
            "download(Path(sys.argv[1]), competition='dogs-vs-cats')")
    return subprocess.run([sys.executable, "-c", code, str(tmp_path / "downloads")], env=env, text=True,
                          capture_output=True, check=False)


def test_missing_kaggle_credentials_give_our_message(tmp_path):
    result = kaggle_subprocess(tmp_path, {})
    assert "KaggleError" in result.stderr
    for hint in ("~/.kaggle/kaggle.json", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "data.archive"):
        assert hint in result.stderr
    assert "Authentication required" not in result.stdout + result.stderr  # the package's own help is replaced


def test_kaggle_credentials_never_reach_the_output(tmp_path):
    secret = "s3cr3t-kaggle-key-0123456789"
    # a legacy key authenticates locally; the download then fails at the local dead proxy
    result = kaggle_subprocess(tmp_path, {"KAGGLE_USERNAME": "someone", "KAGGLE_KEY": secret})
    assert "KaggleError" in result.stderr and "cannot reach Kaggle" in result.stderr
    assert secret not in result.stdout + result.stderr


def test_kaggle_http_errors_say_what_to_do():
    assert "accept the competition's rules" in http_advice(403, "dogs-vs-cats", None)
    assert "https://www.kaggle.com/competitions/dogs-vs-cats/rules" in http_advice(403, "dogs-vs-cats", None)
    assert "token is stale" in http_advice(401, None, "tongpython/cat-and-dog")
    assert "https://www.kaggle.com/datasets/tongpython/cat-and-dog" in http_advice(404, None, "tongpython/cat-and-dog")


def test_dogs_vs_cats_layout_nested_zips_and_names_carrying_the_label(tmp_path):
    archive = write_dogs_vs_cats_zip(tmp_path / "dogs-vs-cats.zip", per_class=6)
    skipped = download_source(DataParams(source="kaggle", archive=str(archive)), tmp_path / "raw", tmp_path)
    assert raw_counts(tmp_path / "raw") == {("train", "cat"): 6, ("train", "dog"): 6}
    skipped_names = sorted(str(item.path) for item in skipped)
    assert "dogs-vs-cats.zip/sampleSubmission.csv" in skipped_names
    assert sum(name.startswith("dogs-vs-cats.zip/test1/") for name in skipped_names) == 5  # unlabelled test set


def test_kaggle_class_folder_layout_keeps_its_split(tmp_path):
    import zipfile

    archive = tmp_path / "cat-and-dog.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for split, count in (("training_set", 4), ("test_set", 2)):
            for animal in ("cats", "dogs"):
                for n in range(count):
                    zipped.writestr(f"{split}/{split}/{animal}/{animal[:-1]}.{n}.jpg", jpeg_bytes((90, 90, 90), seed=n))
    download_source(DataParams(source="kaggle", archive=str(archive)), tmp_path / "raw", tmp_path)
    assert raw_counts(tmp_path / "raw") == {("train", "cats"): 4, ("train", "dogs"): 4,
                                            ("test", "cats"): 2, ("test", "dogs"): 2}


# --- CSV labels ----------------------------------------------------------------------------------

def test_csv_labels_with_ids_lacking_extensions_report_missing_and_unlabelled_files(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a1", "a2", "b1", "b2", "stray"):
        (images / f"{name}.jpg").write_bytes(jpeg_bytes((50, 150, 50)))
    labels = tmp_path / "labels.csv"
    labels.write_text("image_id,species\na1,ant\na2,ant\nb1,bee\nb2,bee\nb3,bee\n")
    params = DataParams(source="csv", path=str(images), labels_csv=str(labels),
                        csv=CsvParams(file_column="image_id", label_column="species", extension=".jpg"))
    skipped = download_source(params, tmp_path / "raw", tmp_path)
    assert raw_counts(tmp_path / "raw") == {(None, "ant"): 2, (None, "bee"): 2}
    reasons = {item.path.name: item.reason for item in skipped}
    assert reasons == {"b3.jpg": "listed in labels.csv (line 6) but missing", "stray.jpg": "no row in labels.csv"}


def test_csv_with_other_columns_names_them(tmp_path):
    (tmp_path / "labels.csv").write_text("file,class\nx.jpg,a\n")
    params = DataParams(source="csv", path=str(tmp_path), labels_csv=str(tmp_path / "labels.csv"))
    with pytest.raises(ValueError, match=r"no column 'id'; its columns are file, class.*data\.csv\.file_column"):
        download_source(params, tmp_path / "raw", tmp_path)


def test_kaggle_needs_exactly_one_of_archive_competition_dataset():
    from imgclf.plumbing.params import ParamsError, parse_section

    with pytest.raises(ParamsError, match="exactly one of data.archive, data.kaggle.competition"):
        parse_section(DataParams, {"source": "kaggle"}, "data")
    assert DataParams(source="kaggle", kaggle=KaggleParams(dataset="a/b")).kaggle.dataset == "a/b"


# --- end to end with the real dvc ----------------------------------------------------------------

@pytest.mark.slow
def test_dvc_repro_end_to_end(tmp_path):
    """A CIFAR-10 archive in the official binary layout, served as a file:// URL, through the real
    `dvc repro` (a Kaggle archive goes through it in tests/test_manual_commands.py, docs/data.md's line)."""
    project = make_project(tmp_path / "project", heatmaps=False)
    archive = write_cifar_archive(tmp_path / "cifar-10-binary.tar.gz", "cifar10", train_per_batch=8, test_count=20)
    values = {"data.url": archive.as_uri(), "data.checksum": md5(archive)}
    expected_test = 20
    set_params(project, **{"data.source": "cifar10", **values, "data.cache_dir": str(tmp_path / "cache"),
                           "train.epochs": 1, "split.val": 0.25})
    run(["dvc", "repro"], project)
    counts = json.loads((project / "metrics/data.json").read_text())
    assert counts["images"]["test"] == expected_test
    assert json.loads((project / "metrics/evaluate.json").read_text())["test_images"] == expected_test

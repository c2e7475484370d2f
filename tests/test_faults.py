"""Runs that get killed, disks that fill up, experiments that run side by side, hostile files.

Each test builds the fault itself and runs the real stage scripts or the real ``dvc`` CLI.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ruamel.yaml import YAML

from imgclf.data.dataset import ImageSet, save_image_set
from tests.helpers import (
    command_env,
    make_project,
    read_only,
    run,
    set_params,
    stage_command,
    write_image_folder,
)

pytestmark = pytest.mark.slow

# long enough to be killed halfway through training, short enough for CI
FAULT_PARAMS = {"data.source": "folder", "resize.size": [16, 16], "train.epochs": 25, "train.batch_size": 8,
                "split.val": 0.25, "split.test": 0.25}


def fault_project(root: Path, images: Path) -> Path:
    project = make_project(root, heatmaps=False)
    set_params(project, **FAULT_PARAMS, **{"data.path": str(images)})
    return project


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("images") / "images", per_class=12)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, images) -> Path:
    """An uninterrupted run: what every recovered run must reproduce byte for byte."""
    project = fault_project(tmp_path_factory.mktemp("reference") / "project", images)
    run(["dvc", "repro"], project)
    return project


def lock_entries(project: Path) -> str:
    return (project / "dvc.lock").read_text() if (project / "dvc.lock").exists() else ""


def kill_when(project: Path, ready, timeout: float = 240) -> None:
    """Start `dvc repro`, SIGKILL its whole process group as soon as ``ready(log)`` holds."""
    log_path = project / "repro.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(["dvc", "repro"], cwd=project, env=command_env(), stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while not ready(log_path.read_text()):
        assert process.poll() is None, "the run ended before the moment to kill it:\n" + log_path.read_text()
        assert time.monotonic() < deadline, "timed out waiting for the moment to kill"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def lock_without_shard_layout(project: Path) -> dict:
    """dvc.lock less what the shard size changes: the resize.shard_mb param and the split folders' hashes."""
    lock = YAML(typ="safe").load(lock_entries(project))
    lock["stages"]["resize"]["params"]["params.yaml"]["resize"].pop("shard_mb")
    for entry in lock["stages"].values():
        for kind in ("deps", "outs"):
            entry[kind] = [item for item in entry.get(kind, [])
                           if item["path"] not in ("data/resized/train", "data/resized/val", "data/resized/test")]
    return lock


def test_the_onnx_copy_killed_midway_loses_no_training_and_the_pipeline_goes_on(tmp_path, images, reference):
    """SIGKILL, as the kernel's out-of-memory killer sends it, to the ONNX conversion of the real train
    stage once it is writing: the stage still succeeds with the trained model, says in one line what
    is missing, and evaluate and `imgclf predict` use model.keras."""
    import psutil

    project = fault_project(tmp_path / "project", images)
    set_params(project, **{"train.onnx_in_process_mb": 0})  # the copy of a model this small is made in training
    log_path = project / "repro.log"
    with open(log_path, "w") as log:
        repro = psutil.Popen(["dvc", "repro"], cwd=project, env=command_env(), stdout=log, stderr=subprocess.STDOUT)
    killed = None
    while repro.poll() is None and killed is None:
        for process in repro.children(recursive=True):
            try:
                converting = "imgclf.serving.export" in process.cmdline() and any(
                    (project / "models").glob(".export-*/.export-*"))  # its own staging folder: it is converting
                if converting:
                    process.kill()
                    killed = process.pid
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.02)
    assert repro.wait() == 0, log_path.read_text()
    output = log_path.read_text()
    assert killed is not None, "the conversion was never seen running:\n" + output
    models = project / "models"
    assert sorted(path.name for path in models.iterdir()) == [
        "classes.json", "model.keras", "preprocessing.json", "summary.txt"]  # no model.onnx, nothing half-written
    (line,) = [line for line in output.splitlines() if "models/model.onnx" in line and "SIGKILL" in line]
    assert "out-of-memory" in line and "model.keras" in line
    for path in ("metrics/train.json", "metrics/evaluate.json"):  # the same training, evaluated as ever
        assert (project / path).read_bytes() == (reference / path).read_bytes(), path
    predicted = run(["imgclf", "predict", str(images / "red"), "--model-dir", "models", "--verbose"], project)
    assert "engine keras (models/model.keras)" in predicted.stdout


@pytest.mark.parametrize("stage", ["resize", "train", "evaluate"])
def test_sigkill_during_a_stage_then_repro_gives_the_right_outputs(tmp_path, images, reference, stage):
    project = fault_project(tmp_path / "project", images)
    if stage == "resize":  # a shard per image: killed between two shards of a split, not before the first
        set_params(project, **{"resize.shard_mb": 0.0001})
    moments = {
        # resize is busy writing its splits once a shard is in its staging folder
        "resize": lambda log: any((project / "data").glob(".resized.*.partial/*/images-*.npy")),
        # training is under way once DVCLive has written the first epoch
        "train": lambda log: (project / "metrics/history/plots/metrics/train/loss.tsv").exists(),
        "evaluate": lambda log: "Running stage 'evaluate'" in log,
    }
    kill_when(project, moments[stage])
    assert f"{stage}:" not in lock_entries(project)  # dvc.lock never records the killed stage
    if stage == "resize":  # what it wrote is in a staging folder that no stage reads, and the next run deletes
        assert not (project / "data/resized/train").exists()
        assert list((project / "data").glob(".resized.*.partial"))

    run(["dvc", "repro"], project)
    assert "up to date" in run(["dvc", "status"], project).stdout
    for path in ("metrics/evaluate.json", "metrics/train.json", "metrics/data.json", "metrics/predictions.csv"):
        assert (project / path).read_bytes() == (reference / path).read_bytes(), path
    if stage == "resize":
        assert not list((project / "data").glob(".resized.*.partial"))
        # a split in 8 or 12 shards trains the same model as in one: the same weights, the same hashes
        assert len(list((project / "data/resized/train").glob("images-*.npy"))) > 1
        assert len(list((reference / "data/resized/train").glob("images-*.npy"))) == 1
        assert lock_without_shard_layout(project) == lock_without_shard_layout(reference)
    else:  # the same params give the same dvc.lock, every hash (the model's included) in another folder
        assert lock_entries(project) == lock_entries(reference)
        assert "path: models" in lock_entries(project) and "path: metrics/train.json" in lock_entries(project)


def test_a_full_disk_while_writing_images_names_the_path_and_keeps_nothing(tmp_path, images):
    project = fault_project(tmp_path / "project", images)
    run(["dvc", "repro", "split"], project)

    def small_file_limit() -> None:  # every file written may hold at most 200 bytes: the disk is "full"
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))

    result = subprocess.run([sys.executable, *stage_command("resize")[1:]], cwd=project, env=command_env(),
                            text=True, capture_output=True,
                            preexec_fn=small_file_limit, check=False)
    assert result.returncode == 1
    assert "cannot write data/.resized." in result.stderr and "File too large" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / "data" / "resized").exists()
    assert not list((project / "data").glob(".resized.*"))


def test_a_read_only_output_folder_is_named_as_such_not_as_a_full_disk(tmp_path, images):
    project = fault_project(tmp_path / "project", images)
    run(["dvc", "repro", "split"], project)
    with read_only(project / "data"):
        result = subprocess.run([sys.executable, *stage_command("resize")[1:]], cwd=project, env=command_env(),
                                text=True, capture_output=True, check=False)
    assert result.returncode == 1
    assert re.search(r"cannot access data/\.resized\.\S+: (Permission denied|Operation not permitted)\. "
                     r"Check that you may read and write there", result.stderr), result.stderr
    assert "disk space" not in result.stderr and "Traceback" not in result.stderr
    assert not (project / "data" / "resized").exists()
    assert not list((project / "data").glob(".resized.*"))


def test_an_interrupted_download_with_a_corrupted_partial_file_is_caught_by_its_checksum(tmp_path, monkeypatch):
    import hashlib

    from imgclf.data import downloads
    from imgclf.data.downloads import Checksum, DownloadError, fetch
    from tests.helpers import FileServer

    monkeypatch.setattr(downloads, "RETRY_DELAY_SECONDS", 0.0)
    payload = os.urandom(300_000)
    checksum = Checksum("md5", hashlib.md5(payload).hexdigest())
    (tmp_path / "data.bin.part").write_bytes(b"garbage!" * 1000)  # a damaged partial file from an earlier run
    server = FileServer(payload)
    try:
        with pytest.raises(DownloadError, match="the file was deleted"):
            fetch(server.url("data.bin"), tmp_path / "data.bin", checksum, timeout=5, retries=0)
        assert server.requests == ["bytes=8000-"]  # it was resumed, and the checksum caught the damage
        fresh = fetch(server.url("data.bin"), tmp_path / "data.bin", checksum, timeout=5, retries=0)
        assert fresh.read_bytes() == payload
    finally:
        server.close()


# --- hostile files -------------------------------------------------------------------------------

def test_a_model_with_a_lambda_layer_is_refused_by_evaluate(tmp_path):
    import keras

    project = make_project(tmp_path / "project", heatmaps=False)
    inputs = keras.Input((16, 16, 3))
    outputs = keras.layers.Lambda(lambda pixels: keras.ops.mean(pixels, axis=(1, 2)))(inputs)
    (project / "models").mkdir()
    keras.Model(inputs, outputs).save(project / "models" / "model.keras")
    (project / "models" / "classes.json").write_text('["a", "b", "c"]')
    (project / "data/resized").mkdir(parents=True)
    save_image_set(project / "data/resized/test", ImageSet(np.zeros((3, 16, 16, 3), np.uint8),
                                                              np.arange(3, dtype=np.int32), ("1", "2", "3"),
                                                              ("a", "b", "c")))
    result = run(stage_command("evaluate"), project, check=False)
    assert result.returncode == 1
    assert "refused to load models/model.keras" in result.stdout and "Lambda" in result.stdout
    assert "Traceback" not in result.stdout
    assert not (project / "metrics" / "evaluate.json").exists()


def test_a_params_file_with_a_python_object_tag_is_refused(tmp_path):
    project = make_project(tmp_path / "project", heatmaps=False)
    marker = tmp_path / "pwned"
    params = (project / "params.yaml").read_text()
    (project / "params.yaml").write_text(params.replace("source: digits", f"source: !!python/object/apply:os.system "
                                                        f"['touch {marker}']"))
    result = run(stage_command("download"), project, check=False)
    assert result.returncode == 1 and "Python object tag" in result.stdout
    assert not marker.exists() and not (project / "data" / "raw").exists()


def test_our_code_reads_params_exactly_as_dvc_params_diff_does(tmp_path):
    from imgclf.data.params import DataParams
    from imgclf.modeling.params import TrainParams
    from imgclf.plumbing.params import load_section

    project = make_project(tmp_path / "project", heatmaps=False)
    set_params(project, **{"train.learning_rate": 0.5})
    run(["git", "commit", "-qam", "baseline"], project)
    text = (project / "params.yaml").read_text()
    text = text.replace("learning_rate: 0.5", "learning_rate: 1e-3").replace("epochs: 30", "epochs: 042")
    text = re.sub(r"(?m)^  path:.*$", "  path: no", text)  # data.path, a string field
    (project / "params.yaml").write_text(text)
    diff = json.loads(run(["dvc", "params", "diff", "--json"], project).stdout)["params.yaml"]
    data, train = load_section(DataParams, project / "params.yaml"), load_section(TrainParams, project / "params.yaml")
    assert diff["train.learning_rate"]["new"] == train.learning_rate == 0.001
    assert diff["train.epochs"]["new"] == train.epochs == 42
    assert diff["data.path"]["new"] == data.path == "no"

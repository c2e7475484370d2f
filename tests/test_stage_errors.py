"""Bad parameters stop a stage before it writes anything, with a message a person can act on."""

from __future__ import annotations

import errno
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from imgclf.plumbing.files import atomic_directory, atomic_file, remove_abandoned_staging
from imgclf.plumbing.stage import run_stage
from tests.helpers import command_env, make_project, run, set_params, stage_command

SPLIT = stage_command("split")[1:]

# (params to set, stage command, the output that must not appear, the message)
BAD_PARAMS: list[tuple[dict[str, object], list[str], str, str]] = [
    ({"data.bogus": 1}, stage_command("download")[1:],
     "data/raw", r"unknown key data\.bogus"),
    ({"split.val": 1.5}, SPLIT,
     "data/split.csv", r"split\.val = 1\.5 is not allowed: use a fraction strictly between 0 and 1"),
    ({"split.val": 0.6, "split.test": 0.5}, SPLIT,
     "data/split.csv", r"split\.val \+ split\.test = 1\.1 is not allowed"),
    ({"resize.size": [32, -1]}, stage_command("resize")[1:],
     "data/resized", r"resize\.size = \[32, -1\]"),
    ({"train.epochs": 0}, stage_command("train")[1:],
     "models", r"train\.epochs = 0 is not allowed: use a number greater than 0"),
    ({"train.learning_rate": "fast"}, stage_command("train")[1:],
     "models", r"train\.learning_rate = 'fast'"),
    ({"train.backend": "torch"}, stage_command("train")[1:],
     "models", r"train\.backend = 'torch' is not allowed: choose one of tensorflow, jax"),
    ({"evaluate.batch_size": -1}, stage_command("evaluate")[1:],
     "metrics/evaluate.json", r"evaluate\.batch_size = -1"),
    ({"export.formats": ["pickle"]}, stage_command("export")[1:],
     "exports", r"export\.formats = 'pickle' is not allowed: choose one of saved_model, onnx, tflite"),
]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return make_project(tmp_path_factory.mktemp("errors") / "project", heatmaps=False)


@pytest.mark.parametrize(("params", "command", "output", "message"), BAD_PARAMS,
                         ids=[",".join(case[0]) for case in BAD_PARAMS])
def test_a_bad_param_stops_the_stage_with_its_message_and_no_output(project, params, command, output, message):
    original = (project / "params.yaml").read_text()
    try:
        set_params(project, **params)
        result = run(["python", *command], project, check=False)
    finally:
        (project / "params.yaml").write_text(original)
    assert result.returncode == 1
    assert re.search(message, result.stdout), result.stdout
    assert "Traceback" not in result.stdout  # a person's mistake gets a message, not a stack
    assert not (project / output).exists()


def test_a_keras_backend_variable_that_disagrees_with_train_backend_is_refused_before_keras_loads(project):
    result = subprocess.run(["python", *stage_command("train")[1:]], cwd=project, text=True,
                            env={**command_env(), "KERAS_BACKEND": "jax"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, check=False)
    assert result.returncode == 1
    assert "KERAS_BACKEND=jax is set, but params.yaml has train.backend: tensorflow" in result.stdout
    assert "-S train.backend=jax" in result.stdout and "Traceback" not in result.stdout
    assert not (project / "models").exists()


@pytest.mark.slow
def test_dvc_repro_stops_at_the_bad_stage_and_records_nothing_for_it(tmp_path):
    project = make_project(tmp_path / "project", heatmaps=False)
    set_params(project, **{"split.test": 0.0})
    result = run(["dvc", "repro"], project, check=False)
    assert result.returncode != 0
    assert "split.test = 0.0 is not allowed" in result.stdout
    assert (project / "data/raw").is_dir()  # download ran and is complete
    assert not (project / "data/split.csv").exists()
    assert "split:" not in (project / "dvc.lock").read_text()


def test_a_failed_block_leaves_no_folder_and_no_staging_behind(tmp_path):
    with pytest.raises(RuntimeError), atomic_directory(tmp_path / "out") as staging:
        (staging / "half.png").write_bytes(b"...")
        raise RuntimeError("killed halfway")
    assert list(tmp_path.iterdir()) == []


def test_a_completed_block_replaces_the_old_output(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "stale.png").write_bytes(b"old")
    with atomic_directory(tmp_path / "out") as staging:
        (staging / "new.png").write_bytes(b"new")
    assert [path.name for path in (tmp_path / "out").iterdir()] == ["new.png"]


def test_staging_of_a_killed_process_is_removed_even_while_it_is_an_unreaped_zombie(tmp_path):
    """Where PID 1 does not reap orphans (some containers), a killed stage stays a zombie: it answers
    signals but will never finish its staging folder."""
    exited = subprocess.Popen(["true"])  # not waited for yet: a zombie once it has exited
    while Path(f"/proc/{exited.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        time.sleep(0.01)
    abandoned = tmp_path / f".out.{exited.pid}.abc123.partial"
    abandoned.mkdir()
    running = tmp_path / f".out.{os.getpid()}.def456.partial"  # this process's: left alone
    running.mkdir()
    try:
        remove_abandoned_staging(tmp_path / "out")
    finally:
        exited.wait()
    assert not abandoned.exists() and running.exists()


def test_a_failed_file_write_keeps_the_previous_file(tmp_path):
    (tmp_path / "metrics.json").write_text("{}")
    with pytest.raises(RuntimeError), atomic_file(tmp_path / "metrics.json") as handle:
        handle.write('{"accuracy": ')
        raise RuntimeError("killed halfway")
    assert (tmp_path / "metrics.json").read_text() == "{}"
    assert [path.name for path in tmp_path.iterdir()] == ["metrics.json"]


@pytest.mark.parametrize(("error", "told", "not_told"), [
    (PermissionError(errno.EACCES, "Permission denied", "data/.resized.x.partial/train/images-00000.npy"),
     "cannot access data/.resized.x.partial/train/images-00000.npy: Permission denied. Check that you may read and "
     "write there",
     "disk space"),
    (OSError(errno.EROFS, "Read-only file system", "data/raw"), "cannot access data/raw: Read-only file system",
     "disk space"),
    (OSError(errno.ENOSPC, "No space left on device", "models/model.keras"),
     "cannot write models/model.keras: No space left on device. Free disk space", "Check that you may"),
])
def test_a_stage_says_what_really_went_wrong_with_a_file(caplog, error, told, not_told):
    def main() -> None:
        raise error

    with pytest.raises(SystemExit) as exit_info:
        run_stage(main)
    assert exit_info.value.code == 1
    assert told in caplog.text and not_told not in caplog.text


def test_any_other_os_error_is_a_bug_and_keeps_its_traceback():
    def main() -> None:
        raise OSError(errno.EIO, "Input/output error", "data/raw/a.png")

    with pytest.raises(OSError, match="Input/output error"):
        run_stage(main)


def test_an_optional_step_that_fails_says_what_is_missing_and_lets_the_stage_go_on(caplog):
    """The train stage's figures and diagram come after its model folder: a failure there is one line."""
    import logging

    from imgclf.plumbing.stage import optional_step

    with caplog.at_level(logging.WARNING):
        with optional_step("metrics/figures/train/training_curves.png"):
            raise ValueError("a curve with no points")
        with optional_step("logs/architecture.png"):
            raise MemoryError()
    assert [record.getMessage() for record in caplog.records] == [
        "no metrics/figures/train/training_curves.png: ValueError: a curve with no points; the stage's other "
        "outputs are written",
        "no logs/architecture.png: out of memory; the stage's other outputs are written"]

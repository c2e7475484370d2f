"""The train stage as a process: spread over two devices and two worker processes, killed and
resumed, and the pipeline's train and evaluate stages under the JAX backend without TensorFlow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from imgclf.modeling.devices import describe_cpu
from imgclf.modeling.params import TrainParams
from imgclf.plumbing.params import load_section
from tests.helpers import PROJECT_ROOT, command_env, make_project, run, set_params, stage_command, write_image_folder
from tests.servers import free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project whose data is resized (train, val and test splits of 16x16 images), not yet trained."""
    root = tmp_path_factory.mktemp("train-stage")
    images = write_image_folder(root / "images", ("red", "green", "blue"), per_class=40)
    project = make_project(root / "project", heatmaps=False)
    set_params(project, **{"data.source": "folder", "data.path": str(images), "resize.size": [16, 16],
                           "train.batch_size": 16, "train.epochs": 2})
    run(["dvc", "repro", "resize"], project)
    return project


def train_command(outputs: str, checkpoints: str | None = None) -> list[str]:
    """The train stage's command from dvc.yaml with every output under the folder ``outputs``."""
    command = stage_command("train")
    renamed = {"models": f"{outputs}/models", "metrics/train.json": f"{outputs}/train.json",
               "metrics/history": f"{outputs}/history", "metrics/figures/train": f"{outputs}/figures"}
    command = [renamed.get(argument, argument) for argument in command]
    return [sys.executable, *command[1:], "--tensorboard", f"{outputs}/tensorboard",
            "--timing", f"{outputs}/timing.json", "--diagram", f"{outputs}/architecture.png",
            "--checkpoints", checkpoints or f"{outputs}/checkpoints"]


def start(command: list[str], cwd: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(command, cwd=cwd, env={**command_env(), **env}, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def finish(process: subprocess.Popen[str], timeout: float = 600) -> str:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-6000:]
    return output


def model_weights(path: Path) -> list[np.ndarray]:
    import keras

    from imgclf.modeling.modelio import load_model

    return [keras.ops.convert_to_numpy(w) for w in load_model(path).weights]


# The distributed runs train with Muon: a custom optimizer's own update must run on every replica
# (TensorFlow) and give every worker the same weights (JAX). Tests after them set the checkout's
# params.yaml values of the same keys back.
MUON = {"train.model": "fast_cnn", "train.optimizer": "muon", "train.learning_rate": 0.05}
_TRAIN_DEFAULTS = load_section(TrainParams, PROJECT_ROOT / "params.yaml")
DEFAULT_OPTIMIZER = {key: getattr(_TRAIN_DEFAULTS, key.removeprefix("train.")) for key in MUON}


def test_mirrored_on_two_logical_cpu_devices(project):
    set_params(project, **{"train.backend": "tensorflow", "train.distribution": "mirrored", **MUON})
    output = finish(start(train_command("out/mirrored"), project, IMGCLF_LOGICAL_CPUS="2"))
    metrics = json.loads((project / "out/mirrored/train.json").read_text())
    assert metrics["distribution"] == "mirrored" and metrics["replicas"] == 2, output[-3000:]
    assert metrics["device"] == describe_cpu() and metrics["device"].startswith("cpu (")  # what decides the digits
    assert metrics["epochs"] == 2 and (project / "out/mirrored/models/model.keras").is_file()


def test_multi_worker_with_two_worker_processes_on_this_machine(project):
    """Two JAX processes on 127.0.0.1 train one model, each feeding half of every batch; the cluster
    is described by TF_CONFIG, as for TensorFlow."""
    set_params(project, **{"train.distribution": "multi_worker", "train.backend": "jax", **MUON})
    workers = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    processes = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        processes.append(start(train_command(f"out/worker{index}"), project, TF_CONFIG=tf_config))
    outputs = [finish(process) for process in processes]
    for index in range(2):
        metrics = json.loads((project / f"out/worker{index}/train.json").read_text())
        assert metrics["distribution"] == "multi_worker" and metrics["replicas"] == 2, outputs[index][-3000:]
        assert metrics["epochs"] == 2 and (project / f"out/worker{index}/models/model.keras").is_file()
    # the workers trained one model together: the same weights and the same (global) scores on both
    assert (project / "out/worker0/train.json").read_bytes() == (project / "out/worker1/train.json").read_bytes()
    for first, second in zip(model_weights(project / "out/worker0/models/model.keras"),
                             model_weights(project / "out/worker1/models/model.keras"), strict=True):
        np.testing.assert_array_equal(first, second)


def test_multi_worker_with_tensorflow_says_to_use_jax(project):
    set_params(project, **{"train.backend": "tensorflow", "train.distribution": "multi_worker"})
    tf_config = json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                            "task": {"type": "worker", "index": 0}})
    process = start(train_command("out/refused"), project, TF_CONFIG=tf_config)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 1
    assert "keras-team/keras#20585" in output and "train.backend: jax" in output
    assert not (project / "out/refused/models").exists()


def test_a_run_killed_after_epoch_two_of_four_resumes_to_the_same_metrics(project):
    set_params(project, **{"train.backend": "tensorflow", "train.distribution": "none", "train.epochs": 4,
                           **DEFAULT_OPTIMIZER,
                           "train.resume": True, "train.dropout_rate": 0.3, "train.augment.horizontal_flip": True,
                           "train.augment.rotation": 10.0, "train.schedule": "cosine"})
    finish(start(train_command("out/whole"), project))
    assert not (project / "out/whole/checkpoints").exists()  # a finished run leaves no checkpoint

    pointer = project / "out/resumed/checkpoints/latest.json"
    process = start(train_command("out/resumed"), project)
    deadline = time.monotonic() + 300
    while not (pointer.is_file() and json.loads(pointer.read_text())["checkpoint"] >= "epoch-0002"):
        assert process.poll() is None, process.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "no checkpoint of epoch 2 within 5 minutes"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = json.loads(pointer.read_text())["checkpoint"]
    assert killed_at in ("epoch-0002", "epoch-0003"), killed_at  # killed before the run ended
    assert not (project / "out/resumed/train.json").exists()

    output = finish(start(train_command("out/resumed"), project))
    assert f"resuming from the checkpoint after epoch {int(killed_at[-4:])}" in output
    assert (project / "out/resumed/train.json").read_bytes() == (project / "out/whole/train.json").read_bytes()
    for resumed, whole in zip(model_weights(project / "out/resumed/models/model.keras"),
                              model_weights(project / "out/whole/models/model.keras"), strict=True):
        np.testing.assert_array_equal(resumed, whole)
    history = project / "out/resumed/history/plots/metrics/val/loss.tsv"
    assert history.read_text() == (project / "out/whole/history/plots/metrics/val/loss.tsv").read_text()


def test_train_and_evaluate_run_under_jax_without_tensorflow(tmp_path):
    """`dvc repro` with train.backend jax and every `import tensorflow` failing."""
    blocker = tmp_path / "no-tensorflow" / "tensorflow"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text('raise ImportError("TensorFlow is blocked in this test")\n')
    images = write_image_folder(tmp_path / "images", ("red", "green", "blue"), per_class=20)
    repo = make_project(tmp_path / "project")
    set_params(repo, **{"data.source": "folder", "data.path": str(images), "resize.size": [16, 16],
                        "train.epochs": 2, "train.batch_size": 16, "train.augment.horizontal_flip": True,
                        "train.backend": "jax"})
    env = {**command_env(),
           "PYTHONPATH": os.pathsep.join([str(blocker.parent), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(["dvc", "repro"], cwd=repo, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, check=False)
    assert result.returncode == 0, result.stdout[-6000:]
    assert "with the jax backend" in result.stdout
    assert "no TensorBoard logs" in result.stdout  # the things that need TensorFlow say so
    assert "no models/model.onnx" in result.stdout and "exporting needs TensorFlow" in result.stdout
    assert "drew where the model looked" in result.stdout  # the heatmaps' gradients come from jax.grad
    assert (repo / "models/model.keras").is_file() and not (repo / "models/model.onnx").exists()
    train = json.loads((repo / "metrics/train.json").read_text())
    evaluate = json.loads((repo / "metrics/evaluate.json").read_text())
    assert train["backend"] == "jax" and train["epochs"] == 2
    assert evaluate["test_images"] > 0 and 0.0 <= evaluate["accuracy"] <= 1.0


def test_dvc_metrics_show_follows_a_running_training(project):
    """DVCLive rewrites metrics/history/metrics.json after every epoch: `dvc metrics show` of that
    file, run beside a training, shows the epoch it has reached (docs/training.md: "Watching a run")."""
    set_params(project, **{"train.backend": "tensorflow", "train.distribution": "none", "train.epochs": 500,
                           **DEFAULT_OPTIMIZER,
                           "train.resume": False})
    summary = project / "metrics/history/metrics.json"
    summary.unlink(missing_ok=True)
    process = start(stage_command("train"), project)
    try:
        deadline = time.monotonic() + 300
        while not (summary.is_file() and json.loads(summary.read_text() or "{}").get("step", 0) >= 2):
            assert process.poll() is None, process.communicate()[0][-3000:]
            assert time.monotonic() < deadline, "no epoch logged within 5 minutes"
            time.sleep(0.05)
        # DVCLive rewrites the file in place after every epoch, and these epochs take a tenth of a
        # second: a read can meet it half-written (DVC then shows an error for it); look again
        for _ in range(10):
            shown = run(["dvc", "metrics", "show", "--json", "metrics/history/metrics.json"], project).stdout
            workspace = json.loads(shown).get("", {}).get("data", {}).get("metrics/history/metrics.json", {})
            if "data" in workspace:
                break
        assert process.poll() is None, "the training ended before `dvc metrics show` looked at it"
    finally:
        process.kill()
        process.wait()
    live = workspace["data"]
    assert live["step"] >= 2 and {"train", "val", "learning_rate"} <= set(live)

"""The train stage after its last epoch: memory and time of the model folder, the figures and the ONNX copy.

For each network users train at photo size (``simple_cnn``, ``vgg16`` from scratch, ``transfer`` on
``resnet50`` without downloaded weights) at 224x224, one epoch on ``--photos`` synthetic photos, in
a scratch project (the resize stage run by ``dvc repro resize``), the train stage's two commands as
dvc.yaml runs them, each under the memory sampler of the CI guard (tests/stage_memory.py):

- ``stages/train.py``: its peak (the training peak: the epoch holds the most), and the seconds from
  its "best epoch" log line to its end (model folder, metrics, figures; the log has whole seconds);
- ``stages/onnx_copy.py``: its peak and its seconds (the converter's process start, TensorFlow's
  import, loading model.keras, the conversion, the check on the validation split).

Targets (issue 27): every network ends with models/model.onnx written; the after-training peak at
most 1.5x the training peak; for simple_cnn the after-training steps under 20 s in all.

    .venv/bin/python benchmarks/after_training.py     # about 10 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shlex
import sys
import tempfile
from pathlib import Path

import psutil
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the project copy is made as the end-to-end tests make theirs

from targets import Targets  # noqa: E402  (benchmarks/targets.py, beside this script)

from tests.helpers import command_env, make_project, run, set_params, synthetic_photos  # noqa: E402
from tests.stage_memory import run_measuring_stages  # noqa: E402

NETWORKS: dict[str, dict[str, object]] = {
    "simple_cnn": {"train.model": "simple_cnn"},
    "vgg16": {"train.model": "vgg16", "train.batch_size": 16},  # seed tutorial 000's case; its batch
    "resnet50": {"train.model": "transfer", "train.backbone": "resnet50", "train.weights": "none"},
}
LOG_TIME = re.compile(r"^(\d\d:\d\d:\d\d) INFO +imgclf\.training\.loop: best epoch", re.MULTILINE)


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def train_commands(project: Path) -> list[list[str]]:
    """The train stage's commands as dvc.yaml runs them."""
    commands = YAML(typ="safe").load((project / "dvc.yaml").read_text())["stages"]["train"]["cmd"]
    return [shlex.split(command) for command in commands]


def measure(project: Path, network: str, targets: Targets) -> str:
    training, onnx_copy = train_commands(project)
    trained = run_measuring_stages(training, project, command_env(), project / f"{network}-train.log")
    finished = datetime.datetime.now()
    if trained.returncode:
        sys.exit(f"{network}: stages/train.py failed:\n{trained.output[-3000:]}")
    best_epoch = datetime.datetime.combine(finished.date(), datetime.time.fromisoformat(
        LOG_TIME.findall(trained.output)[-1]))
    folder_seconds = (finished - best_epoch).total_seconds()
    copied = run_measuring_stages(onnx_copy, project, command_env(), project / f"{network}-onnx.log")
    if copied.returncode:
        sys.exit(f"{network}: stages/onnx_copy.py failed:\n{copied.output[-3000:]}")
    written = (project / "models" / "model.onnx").is_file()
    training_peak, after_peak = trained.stage_peaks["train"], copied.stage_peaks["train"]
    after_seconds = folder_seconds + copied.seconds
    ratio = after_peak / training_peak
    verdicts = [targets.check(f"{network}: model.onnx written", written),
                targets.check(f"{network}: after-training peak <= 1.5x training", ratio <= 1.5)]
    if network == "simple_cnn":
        verdicts.append(targets.check("simple_cnn: after-training steps < 20 s", after_seconds < 20))
    return (f"{network:>10}: training peak {training_peak / 2**30:.2f} GB; after training: model folder and figures "
            f"{folder_seconds:.0f} s, ONNX copy {copied.seconds:.1f} s at peak {after_peak / 2**30:.2f} GB "
            f"({ratio:.2f}x the training peak), model.onnx {'written' if written else 'MISSING'}  "
            f"[targets: {', '.join(verdicts)}]")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=300, help="synthetic 256x256 photos, 3 classes")
    parser.add_argument("--networks", nargs="+", choices=NETWORKS, default=list(NETWORKS))
    args = parser.parse_args()
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GB, "
          f"Python {platform.python_version()}", flush=True)
    targets = Targets()
    lines = []
    with tempfile.TemporaryDirectory(prefix="after-training-") as scratch_name:
        scratch = Path(scratch_name)
        photos = scratch / "photos"
        synthetic_photos(photos, args.photos)
        project = make_project(scratch / "project")
        set_params(project, **{"data.source": "folder", "data.path": str(photos), "resize.size": [224, 224],
                               "train.epochs": 1, "train.tensorboard": False})
        run(["dvc", "repro", "resize"], project)
        for network in args.networks:
            set_params(project, **NETWORKS[network])
            lines.append(measure(project, network, targets))
            print(lines[-1], flush=True)
            set_params(project, **{"train.model": "simple_cnn", "train.batch_size": 32})
    print("\n".join(lines))
    return targets.exit_status()


if __name__ == "__main__":
    sys.exit(main())

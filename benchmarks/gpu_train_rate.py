"""The train stage on a GPU, on JAX: its images per second against the same network stepping on data
already on the GPU, and the recipe's time to accuracy there (issue 31, point 5).

    KERAS_BACKEND=jax python benchmarks/gpu_train_rate.py --archive ../shared/datasets/cifar10-jpg.tar.gz
    KERAS_BACKEND=jax python benchmarks/gpu_train_rate.py --archive cifar10-jpg.tar.gz --recipe airbench \\
        --set train.epochs=10

For a machine with a GPU, JAX and the project's packages but not DVC: the lent GPU machines have no
DVC, and its hundred packages do not fit what a command may carry there. ``dvc repro`` runs the same
commands; here they run one after another, in dvc.yaml's order:

1. a scratch copy of the pipeline (:data:`tests.helpers.PROJECT_FILES`), its params the recipe
   ``--recipe`` (``airbench95``) with ``train.backend: jax``, over the CIFAR-10 JPEGs of
   ``--archive`` as a ``folder`` source with 4% of the training images for validation (as
   cifar_time_to_accuracy.py);
2. each stage's commands from dvc.yaml, timed: the stage's images per second are the train stage's
   own (logs/train_timing.json: the median epoch from the second on, its training steps only);
3. the same network, built and compiled by the stage's own functions from the same training split
   and params, stepping through Keras' own jitted train step on one batch already on the GPU, as
   many steps as an epoch has (:func:`resident_rate`): no input path, no callbacks, no validation.

Prints each stage's time, each epoch's validation accuracy against the training time (the time to
85, 90, 93 and 94%), the test accuracy, both rates and the stage's share of the resident rate.
Target: at least 0.8.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the project copy is made as the end-to-end tests make theirs

from cifar_time_to_accuracy import accuracy_by_time, print_time_to_accuracy, results  # noqa: E402  (beside this script)
from targets import Targets  # noqa: E402  (benchmarks/targets.py, beside this script)

from imgclf.recipes import load_recipe  # noqa: E402
from tests.helpers import PROJECT_FILES, parse_settings, set_params  # noqa: E402

TARGET_SHARE = 0.8
WARM_STEPS = 5  # resident steps before the timed ones: compiling, the allocator's first sizes


def copy_pipeline(destination: Path) -> Path:
    """The pipeline's files (no outputs, no git or DVC repository: nothing here runs DVC)."""
    destination.mkdir(parents=True)
    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, destination / name)
    return destination


def stage_commands(project: Path) -> list[tuple[str, list[str]]]:
    """Each stage of dvc.yaml in its order, with its commands."""
    from ruamel.yaml import YAML

    stages = YAML(typ="safe").load((project / "dvc.yaml").read_text())["stages"]
    return [(name, [stage["cmd"]] if isinstance(stage["cmd"], str) else list(stage["cmd"]))
            for name, stage in stages.items()]


def run_stages(project: Path) -> dict[str, float]:
    """Run every stage's commands in ``project`` as DVC would; the seconds of each stage."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(project / "src"),
                                                                      os.environ.get("PYTHONPATH")])))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # `python` is this one
    seconds = {}
    for name, commands in stage_commands(project):
        start = time.perf_counter()
        for command in commands:
            print(f"> {command}", flush=True)
            subprocess.run(command, shell=True, cwd=project, env=env, check=True)  # as DVC runs a cmd
        seconds[name] = time.perf_counter() - start
        print(f"stage {name}: {seconds[name]:.1f} s", flush=True)
    return seconds


def resident_rate(project: Path) -> tuple[float, str]:
    """Images per second of the stage's network training on one batch held on the GPU, and the device.

    Built as the train stage builds it (its devices and precision, seed, ``build_from_params`` on the
    training split, ``compile_model``), then stepped by Keras' own jitted train function, the one
    ``fit`` calls, over the same batch again and again: the rate with nothing around the steps.
    """
    os.chdir(project)  # params.yaml and the split folders, as the stage reads them
    from imgclf.modeling.backend import import_keras, use_backend
    from imgclf.modeling.params import TrainParams
    from imgclf.plumbing.params import load_section

    params = load_section(TrainParams)
    use_backend(params.backend)
    import_keras()
    import jax
    import numpy as np

    from imgclf.data.dataset import open_split
    from imgclf.modeling.batches import read_batch
    from imgclf.modeling.devices import setup_devices
    from imgclf.modeling.models import build_from_params
    from imgclf.modeling.optim import steps_per_epoch
    from imgclf.training.loop import compile_model, make_deterministic

    devices = setup_devices(params.distribution, params.mixed_precision)
    make_deterministic(params.seed)
    train_set = open_split(project / "data" / "resized" / "train")
    steps = steps_per_epoch(len(train_set), params.batch_size)
    with devices.scope:
        model = build_from_params(params, train_set, len(train_set.class_names))
        compile_model(model, params, steps)
    images, labels = read_batch(train_set, np.arange(params.batch_size))
    batch = (jax.device_put(images), jax.device_put(labels))
    model.train_on_batch(*batch)  # builds the optimizer's variables and Keras' jitted train function
    state = model._get_jax_state(trainable_variables=True, non_trainable_variables=True,
                                 optimizer_variables=True, metrics_variables=True)
    batches = itertools.repeat(batch)
    for _ in range(WARM_STEPS):
        _, state = model.train_function(state, batches)
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(steps):
        _, state = model.train_function(state, batches)
    jax.block_until_ready(state)
    return steps * params.batch_size / (time.perf_counter() - start), str(jax.devices()[0].device_kind)


def main() -> int:
    targets = Targets()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archive", type=Path, default=ROOT.parent / "shared" / "datasets" / "cifar10-jpg.tar.gz",
                        help="the CIFAR-10 JPEGs (../shared/datasets/cifar10-jpg.tar.gz)")
    parser.add_argument("--recipe", default="airbench95", help="the recipe to run (recipes/NAME.yaml)")
    parser.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                        help="params over the recipe's, as YAML values (e.g. train.epochs=10)")
    parser.add_argument("--keep", type=Path, help="copy the run's metrics/ and logs/ to this folder")
    args = parser.parse_args()
    if not args.archive.is_file():
        sys.exit(f"needs the real CIFAR-10 images at {args.archive} (see ../shared/datasets/README.md)")

    with tempfile.TemporaryDirectory(prefix="gpu-train-rate-") as scratch:
        with tarfile.open(args.archive) as archive:
            archive.extractall(scratch, filter="data")
        project = copy_pipeline(Path(scratch) / "project")
        settings = {"split.val": 0.04, **load_recipe(args.recipe, ROOT / "recipes").settings,
                    "train.backend": "jax", **parse_settings(args.set)}
        print(f"recipe {args.recipe}: {settings}", flush=True)
        set_params(project, **{"data.source": "folder", "data.path": str(Path(scratch) / "cifar10"), **settings})
        stage_seconds = run_stages(project)
        if args.keep:
            for folder in ("metrics", "logs"):
                shutil.copytree(project / folder, args.keep / folder, dirs_exist_ok=True)
        accuracy, train = results(project)
        history = accuracy_by_time(project)
        resident, device = resident_rate(project)

    print(f"device: {device}; precision {train.get('precision')}")
    print("| stage | seconds |\n| --- | --- |")
    for name, seconds in stage_seconds.items():
        print(f"| {name} | {seconds:.1f} |")
    print(f"all stages: {sum(stage_seconds.values()) / 60:.2f} min from the images to the test metrics; training "
          f"{train['seconds']:.1f} s ({train['epochs']} epochs); test accuracy {accuracy:.4f}")
    print_time_to_accuracy(history, unit="seconds")
    stage_rate = float(train["train_images_per_second"])
    share = stage_rate / resident
    print(f"train stage: {stage_rate:.0f} images/s; the same network on one batch held on the GPU: "
          f"{resident:.0f} images/s; share {share:.2f}")
    print(f"target: at least {TARGET_SHARE} of the resident rate: {targets.check('share', share >= TARGET_SHARE)}")
    return targets.exit_status()


if __name__ == "__main__":
    sys.exit(main())

"""Test helpers: a temporary git + DVC repository holding a copy of the project, the real ``dvc``
CLI run inside it, tiny image folders written as real files, and the real datasets in shared/."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from ruamel.yaml import YAML

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = PROJECT_ROOT.parent / "shared" / "datasets"
PROJECT_FILES = ("dvc.yaml", "params.yaml", "stages", "src")


def command_env() -> dict[str, str]:
    """The environment for subprocesses: this interpreter's venv first on PATH, quiet TensorFlow."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.setdefault("GIT_AUTHOR_NAME", "test")
    env.setdefault("GIT_AUTHOR_EMAIL", "test@example.com")
    env.setdefault("GIT_COMMITTER_NAME", "test")
    env.setdefault("GIT_COMMITTER_EMAIL", "test@example.com")
    env["DVC_NO_ANALYTICS"] = "1"
    return env


def run(args: Sequence[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command; on an unexpected exit code fail with everything it printed."""
    result = subprocess.run(list(args), cwd=cwd, env=command_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {result.returncode}:\n{result.stdout[-6000:]}")
    return result


def make_project(destination: Path) -> Path:
    """A fresh git + DVC repository with a copy of the pipeline (no outputs), committed."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        source = PROJECT_ROOT / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, destination / name)
    run(["git", "init", "-q"], destination)
    run(["dvc", "init", "-q"], destination)
    shutil.copy2(PROJECT_ROOT / ".dvc" / "config", destination / ".dvc" / "config")  # the project's DVC settings
    run(["git", "add", "-A"], destination)
    run(["git", "commit", "-qm", "pipeline"], destination)
    return destination


def set_params(repo: Path, **values: object) -> None:
    """Set dotted params, e.g. set_params(repo, **{"train.epochs": 2}), keeping the file's comments."""
    yaml = YAML()
    path = repo / "params.yaml"
    document = yaml.load(path.read_text())
    for dotted, value in values.items():
        *parents, key = dotted.split(".")
        section = document
        for parent in parents:
            section = section[parent]
        section[key] = value
    with open(path, "w") as handle:
        yaml.dump(document, handle)


def write_image_folder(root: Path, classes: Sequence[str] = ("red", "green", "blue"),
                       per_class: int = 20, size: int = 24, seed: int = 0) -> Path:
    """Write ``root/<class>/<n>.(png|jpg)``: noisy images whose dominant colour is the class."""
    rng = np.random.default_rng(seed)
    for class_index, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for number in range(per_class):
            pixels = rng.integers(0, 90, size=(size, size, 3), dtype=np.uint8)
            pixels[..., class_index % 3] += 160
            if class_index >= 3:  # more than three classes: stripes tell the next three apart
                pixels[:: 2 + class_index // 3] = 255
            image = Image.fromarray(pixels)
            if number % 2:
                image.save(folder / f"{number:03d}.jpg", quality=95)
            else:
                image.save(folder / f"{number:03d}.png")
    return root


def require_shared_dataset(name: str) -> Path:
    """The path of a real dataset in ../shared/datasets; skip if absent, fail if REQUIRE_REAL_DATA=1."""
    path = SHARED_DATASETS / name
    if not path.exists():
        message = f"real data {path} is absent (CI provides ../shared/datasets beside the project)"
        if os.environ.get("REQUIRE_REAL_DATA") == "1":
            pytest.fail(message + ", and REQUIRE_REAL_DATA=1")
        pytest.skip(message)
    return path


CIFAR10_ARCHIVE = "cifar10-jpg.tar.gz"


def extract_cifar10_subset(destination: Path, train_per_class: int, test_per_class: int) -> Path:
    """Unpack the first images of each class of the real CIFAR-10 JPEGs: ``<dest>/{train,test}/<class>/``."""
    import tarfile

    archive = require_shared_dataset(CIFAR10_ARCHIVE)
    limits = {"train": train_per_class, "test": test_per_class}

    def wanted(member: tarfile.TarInfo) -> bool:
        parts = Path(member.name).parts  # cifar10/<split>/<class>/NNNN.jpg
        return (member.isfile() and len(parts) == 4 and parts[1] in limits
                and int(Path(parts[3]).stem) < limits[parts[1]])

    with tarfile.open(archive) as tar:
        tar.extractall(destination, members=(m for m in tar if wanted(m)), filter="data")
    return destination / "cifar10"

"""Fixtures shared by several test files, and the order the test files start in."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgclf.modeling.backend import use_onednn_kernels

use_onednn_kernels()  # before TensorFlow loads: the tests' own training takes the stages' kernels

from tests.helpers import train_tiny_model  # noqa: E402

# The longest test files, longest first (seconds of the whole suite's `--durations=0` in two
# processes, 2026-12-06, Intel Xeon, 2 cores; the manual's before it stopped running the README's
# recipe line again, the README's before it stopped waiting on `dvc queue start`'s workers):
# `make test` runs whole files in two processes (pytest-xdist, --dist loadfile, with
# --no-loadscope-reorder, which keeps this order instead of xdist's own: files with the most tests
# first, which started the two one-test runners last and left one process working alone for minutes).
LONGEST_FIRST = (
    "test_manual_commands.py",  # 503
    "test_tune.py",  # 404
    "test_readme_commands.py",  # 289
    "test_faults.py",  # 229
    "test_models.py",  # 144
    "test_train_stage.py",  # 139
    "test_pipeline_dvc.py",  # 139
    "test_recipes.py",  # 117
    "test_memory_guard.py",  # 114
    "test_heatmap_models.py",  # 99
    "test_export.py",  # 93
    "test_team.py",  # 66
    "test_insight.py",  # 60
    "test_training.py",  # 60
    "test_quiet_run.py",  # 59
    "test_real_data.py",  # 51
    "test_predict.py",  # 47
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the rest keep their order, after these


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A model folder as the train stage leaves it (model, classes, preprocessing), really trained.

    Classes "black", "white", "red" on 16x16 images; resized with ``crop``, so that prediction must
    take its preprocessing from the folder, not from params.yaml (whose default is ``stretch``).
    """
    return train_tiny_model(tmp_path_factory.mktemp("tiny_model"))


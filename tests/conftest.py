"""Fixtures shared by several test files, and the order the test files start in."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import train_tiny_model

# The longest test files, longest first (seconds on 2 cores, `--durations=0` of the whole suite,
# 2026-12-03): `make test` runs whole files in two processes (pytest-xdist, --dist loadfile, with
# --no-loadscope-reorder, which keeps this order instead of xdist's own: files with the most tests
# first, which started the two one-test runners last and left one process working alone for minutes).
LONGEST_FIRST = (
    "test_manual_commands.py",  # 450
    "test_tune.py",  # 270
    "test_faults.py",  # 254
    "test_readme_commands.py",  # 242
    "test_pipeline_dvc.py",  # 217
    "test_train_stage.py",  # 185
    "test_models.py",  # 136
    "test_memory_guard.py",  # 116
    "test_export.py",  # 110
    "test_team.py",  # 91
    "test_quiet_run.py",  # 84
    "test_recipes.py",  # 84
    "test_predict.py",  # 81
    "test_insight.py",  # 76
    "test_real_data.py",  # 59
    "test_training.py",  # 58
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


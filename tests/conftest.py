"""Fixtures shared by several test files, and the order the test files start in."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import train_tiny_model

# The longest test files, started first: `make test` runs whole files in two processes (pytest-xdist,
# --dist loadfile), and files of minutes started last would leave one process working alone at the end.
STARTED_FIRST = ("test_manual_commands.py", "test_readme_commands.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.name not in STARTED_FIRST)  # stable: the rest keep their order


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A model folder as the train stage leaves it (model, classes, preprocessing), really trained.

    Classes "black", "white", "red" on 16x16 images; resized with ``crop``, so that prediction must
    take its preprocessing from the folder, not from params.yaml (whose default is ``stretch``).
    """
    return train_tiny_model(tmp_path_factory.mktemp("tiny_model"))


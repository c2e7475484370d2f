"""Fixtures shared by several test files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import train_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A model folder as the train stage leaves it (model, classes, preprocessing), really trained.

    Classes "black", "white", "red" on 16x16 images; resized with ``crop``, so that prediction must
    take its preprocessing from the folder, not from params.yaml (whose default is ``stretch``).
    """
    return train_tiny_model(tmp_path_factory.mktemp("tiny_model"))


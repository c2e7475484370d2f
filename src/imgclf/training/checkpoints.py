"""Checkpoints of a training run, so that ``train.resume`` continues an interrupted run where it stopped.

A checkpoint holds everything that decides the rest of the run: the model with its optimizer state,
the random layers' seed states, the best epoch's weights and the :class:`TrainingState`; it is
resumed only by a run of the same params, backend and data (:func:`fingerprint`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import keras
import numpy as np

from imgclf.data.dataset import Split
from imgclf.modeling.modelio import load_model
from imgclf.modeling.params import TrainParams
from imgclf.plumbing.files import atomic_directory, read_json, write_json
from imgclf.training.records import TrainingState

logger = logging.getLogger(__name__)


def fingerprint(params: TrainParams, *splits: Split) -> str:
    """What a checkpoint must match to be resumed: the params (but resume and logging), backend, data
    (each split's digest, which the resize stage computed: nothing is read again for it)."""
    settings = {key: value for key, value in asdict(params).items() if key not in ("resume", "tensorboard")}
    return hashlib.sha256(json.dumps([settings, keras.backend.backend(), keras.__version__,
                                      [split.digest for split in splits]], sort_keys=True, default=str).encode()
                          ).hexdigest()


def _random_states(model: keras.Model) -> list[Any]:
    """The states of the random layers' seed generators (dropout, augmentation), which ``.keras``
    files do not keep: without them a resumed run would draw other dropout masks and augmentations."""
    return [variable for variable in model.variables if variable.path.endswith("seed_generator_state")]


class Checkpoints:
    """The last epoch of a run in ``folder``: ``epoch-NNNN/`` (model with optimizer, random states,
    best weights, state) and ``latest.json`` pointing at it. The pointer is replaced only once the epoch's folder
    is complete, so a run killed at any moment leaves a consistent checkpoint."""

    def __init__(self, folder: Path, run_fingerprint: str) -> None:
        self.folder = Path(folder)
        self.fingerprint = run_fingerprint

    @property
    def pointer(self) -> Path:
        return self.folder / "latest.json"

    def save(self, model: keras.Model, best_weights: list[np.ndarray] | None, state: TrainingState) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"epoch-{state.epoch:04d}"
        with atomic_directory(self.folder / name) as staging:
            model.save(staging / "model.keras")
            np.savez(staging / "random_states.npz", *[keras.ops.convert_to_numpy(v) for v in _random_states(model)])
            if best_weights is not None:
                np.savez(staging / "best_weights.npz", *best_weights)
            write_json(staging / "state.json", asdict(state))
        write_json(self.pointer, {"checkpoint": name, "fingerprint": self.fingerprint})
        for old in self.folder.glob("epoch-*"):
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)

    def load(self) -> tuple[keras.Model, list[np.ndarray] | None, TrainingState] | None:
        """The last checkpoint of this same run, or None (none, or one of other params or data)."""
        if not self.pointer.is_file():
            return None
        pointer = read_json(self.pointer)
        if pointer.get("fingerprint") != self.fingerprint:
            logger.info("the checkpoint in %s is of other params or data: starting afresh", self.folder)
            return None
        folder = self.folder / pointer["checkpoint"]
        model = load_model(folder / "model.keras")  # with imgclf's layers registered
        with np.load(folder / "random_states.npz") as saved:
            for index, variable in enumerate(_random_states(model)):
                variable.assign(saved[f"arr_{index}"])
        best_weights = None
        if (folder / "best_weights.npz").is_file():
            with np.load(folder / "best_weights.npz") as saved:
                best_weights = [saved[f"arr_{index}"] for index in range(len(saved.files))]
        state = TrainingState(**read_json(folder / "state.json"))
        return model, best_weights, state

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def run_checkpoints(folder: Path, params: TrainParams, *splits: Split) -> Checkpoints | None:
    """This run's checkpoints in ``folder`` with ``train.resume``; without it None, and ``folder`` removed.

    The one place resume is decided: :func:`imgclf.training.loop.train` resumes from and saves to the
    checkpoints it is given. A run without resume saves none, and those an earlier run left behind
    are removed rather than kept for a run that did not ask for them.
    """
    if not params.resume:
        shutil.rmtree(folder, ignore_errors=True)
        return None
    return Checkpoints(folder, fingerprint(params, *splits))

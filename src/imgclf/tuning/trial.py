"""The train stage's side of a trial of ``imgclf tune``: each epoch's validation score goes to the
study, and Optuna's pruner says whether the trial is hopeless and should stop.

``imgclf tune`` hands the trial to the stage through the environment (``IMGCLF_TUNE_TRIAL``, a
JSON :class:`TrialLink`), not through params: which trial of which study a run belongs to is not a
setting of the model, and a run outside a search (``dvc repro``) has none and never stops early.

The pruner is Optuna's ``MedianPruner``: after ``prune_after_epochs`` epochs, a trial whose best
score so far is worse than the median of the finished trials at the same epoch stops. It judges a
trial against the trials that had finished when the trial was proposed (``compared_with``), not
against whatever else finished meanwhile, so that the same study gives the same trials however
many run at once. A stopped trial still writes its model and metrics (``pruned_at_epoch`` in
metrics/train.json) and becomes an experiment like any other.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from typing import Any

logger = logging.getLogger(__name__)

ENVIRONMENT_VARIABLE = "IMGCLF_TUNE_TRIAL"


@dataclass(frozen=True)
class TrialLink:
    """Which trial a run is, and how to judge it."""

    storage: str  # a database URL or a journal file's path (imgclf.tuning.storage)
    study: str
    trial_id: int  # the storage's id of the trial
    number: int  # the trial's number in the study
    per_epoch_key: str | None  # the history key reported each epoch (val_accuracy); None: report nothing
    direction: str  # maximize | minimize
    prune_after_epochs: int | None  # None: never prune
    compared_with: tuple[int, ...]  # numbers of the trials that had finished when this one was proposed

    def to_environment(self) -> dict[str, str]:
        return {ENVIRONMENT_VARIABLE: json.dumps(asdict(self))}

    @classmethod
    def from_environment(cls) -> TrialLink | None:
        text = os.environ.get(ENVIRONMENT_VARIABLE)
        if not text:
            return None
        values = json.loads(text)
        return cls(**{**values, "compared_with": tuple(values["compared_with"])})


class TrialReporter:
    """Called after each epoch with its record: reports the score to the study; True means stop."""

    def __init__(self, link: TrialLink) -> None:
        import optuna

        from imgclf.tuning.storage import open_storage

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # not a line per in-memory study in the stage's log
        self.link = link
        self.storage = open_storage(link.storage, heartbeat=False)
        direction = optuna.study.StudyDirection.MAXIMIZE if link.direction == "maximize" else \
            optuna.study.StudyDirection.MINIMIZE
        self._direction = direction
        self._pruner = (optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=link.prune_after_epochs)
                        if link.prune_after_epochs is not None else None)
        self._finished = self._finished_trials() if self._pruner is not None else []

    def _finished_trials(self) -> list[Any]:
        """The finished trials this one is judged against, as Optuna holds them."""
        from optuna.trial import TrialState

        study_id = self.storage.get_study_id_from_name(self.link.study)
        compared = set(self.link.compared_with)
        return [trial for trial in self.storage.get_all_trials(study_id, deepcopy=False)
                if trial.number in compared and trial.state == TrialState.COMPLETE]

    def __call__(self, epoch: int, record: dict[str, float]) -> bool:
        key = self.link.per_epoch_key
        if key is None or key not in record:
            return False
        self.storage.set_trial_intermediate_value(self.link.trial_id, epoch, float(record[key]))
        if self._pruner is None or not self._finished:
            return False
        if self._pruner.prune(self._judging_study(), self.storage.get_trial(self.link.trial_id)):
            logger.info("imgclf tune: trial %d stops after epoch %d: its best %s so far is below the median "
                        "of the %d finished trials it is compared with at that epoch (Optuna's MedianPruner)",
                        self.link.number, epoch, key, len(self._finished))
            return True
        return False

    def _judging_study(self) -> Any:
        """An in-memory study of the trials this one is compared with: what the pruner sees."""
        import optuna

        study = optuna.create_study(direction=self._direction)
        study.add_trials(self._finished)
        return study


def reporter_from_environment() -> TrialReporter | None:
    """The reporter of the trial that ``imgclf tune`` runs in this process, or None outside a search."""
    link = TrialLink.from_environment()
    if link is None:
        return None
    logger.info("imgclf tune: this run is trial %d of the study %s; each epoch's %s goes to the study",
                link.number, link.study, link.per_epoch_key or "(nothing: the metric has no per-epoch score)")
    return TrialReporter(link)

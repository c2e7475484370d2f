"""Lookahead with a warming average (``train.lookahead``), as airbench94 trains (Jordan, 2024).

From epoch ``START_EPOCH`` on, every ``EVERY`` steps, a slow copy of the weights moves towards the
model's, ``slow = decay * slow + (1 - decay) * weights``, and the model continues from the slow copy
(Lookahead's "k steps forward, one step back", Zhang et al. 2019). The decay grows over the run,
``BASE_DECAY ** EVERY * (step / total steps) ** POWER``: near 0 at first, so the model moves fast,
and 0.77 at the end, where it averages strongly. On an epoch's last step the model takes the slow
copy as it is, so that validation and the kept epoch see the averaged weights.

Every float variable takes part: the weights and the batch-norm statistics (not the integer ones:
the seed generators, the alternating flips' epoch). The slow copy lives in NumPy, outside the model
and its checkpoints: a resumed run starts it again from the restored weights.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

START_EPOCH = 3  # airbench94's ema start_epochs: the first epochs move freely
EVERY = 5  # steps between two moves of the slow copy
BASE_DECAY = 0.95  # per step: the decay of a move is BASE_DECAY ** EVERY at the end of the run
POWER = 3.0  # the decay's warm-up: (step / total steps) ** POWER


def lookahead_decay(step: int, total_steps: int) -> float:
    """The share of the slow copy kept at ``step`` (from 1) of ``total_steps``."""
    return BASE_DECAY ** EVERY * (step / total_steps) ** POWER


class Lookahead(keras.callbacks.Callback):
    """The slow copy, moved after every ``EVERY``-th training step from ``START_EPOCH`` on.

    ``steps_per_epoch`` and ``total_epochs`` give the run's length; ``first_epoch`` is where it
    starts (a resumed run's). The training loop calls ``fit`` once per epoch with this callback.
    """

    def __init__(self, steps_per_epoch: int, total_epochs: int, first_epoch: int = 0) -> None:
        super().__init__()
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = steps_per_epoch * total_epochs
        self.step = steps_per_epoch * first_epoch
        self.slow: list[np.ndarray] | None = None

    def _variables(self) -> list[Any]:
        return [variable for variable in self.model.variables if "float" in str(variable.dtype)]

    def _move(self, decay: float) -> None:
        variables = self._variables()
        if self.slow is None:
            self.slow = [np.array(keras.ops.convert_to_numpy(variable.value)) for variable in variables]
            return
        for slow, variable in zip(self.slow, variables, strict=True):
            slow += (1.0 - decay) * (keras.ops.convert_to_numpy(variable.value) - slow)
            variable.assign(slow)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.step += 1
        if self.step <= START_EPOCH * self.steps_per_epoch:
            return
        if self.step % EVERY == 0:
            self._move(lookahead_decay(self.step, self.total_steps))
        if self.step % self.steps_per_epoch == 0 and self.slow is not None:
            self._move(1.0)  # the epoch's end: the model takes the slow copy for validation

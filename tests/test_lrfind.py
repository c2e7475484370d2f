"""Unit tier of `imgclf lr-find`: the suggestion on loss curves with a known answer (tests/test_insight.py
runs the real command)."""

from __future__ import annotations

import numpy as np
import pytest

from imgclf.plumbing.errors import PipelineError
from imgclf.training.lrfind import smooth, suggest_learning_rate, sweep_rates


def test_the_suggestion_is_where_the_loss_falls_fastest_before_it_blows_up():
    rates = sweep_rates(1e-6, 1.0, 200)
    exponent = np.log10(rates)
    # falls steepest at 1e-3 (a logistic in log rate), then climbs past 1e-1
    losses = 2.3 - 2.0 / (1 + np.exp(-3 * (exponent + 3))) + np.where(exponent > -1, 20 * (exponent + 1), 0)
    assert suggest_learning_rate(rates, smooth(losses, beta=0.0)) == pytest.approx(1e-3, rel=0.15)


def test_smoothing_keeps_a_constant_loss_constant_from_the_first_step():
    assert smooth(np.full(5, 2.0)) == pytest.approx(np.full(5, 2.0))  # bias-corrected: no pull towards 0


def test_a_loss_that_never_falls_says_to_start_lower():
    rates = sweep_rates(1e-3, 1.0, 50)
    with pytest.raises(PipelineError, match="start lr-find lower"):
        suggest_learning_rate(rates, np.linspace(1, 5, 50))


@pytest.mark.parametrize(("start", "end", "steps", "message"), [
    (1e-2, 1e-3, 100, "0 < --start < --end"), (0.0, 1.0, 100, "0 < --start < --end"), (1e-6, 1.0, 5, "at least 10")])
def test_bad_sweeps_are_refused(start, end, steps, message):
    with pytest.raises(PipelineError, match=message):
        sweep_rates(start, end, steps)

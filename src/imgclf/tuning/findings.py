"""What a search found, in the study's folder (``logs/tune/<study>/``): every trial in ``trials.csv``,
Optuna's own plots (``history.png``: the metric by trial with the best so far; ``epochs.png``: each
trial's per-epoch score, where the pruned ones stop; ``importances.png``: how much each param
mattered, by fANOVA), and the lines to print: the best trial and the ``dvc exp apply`` that takes it.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imgclf.plumbing.files import write_csv
from imgclf.plumbing.stage import optional_step
from imgclf.recipes import flag_value

logger = logging.getLogger(__name__)

TRIAL_COLUMNS = ("number", "experiment", "state", "value", "epochs", "planned_epochs", "pruned_at_epoch", "seconds")


def trial_rows(study: Any) -> tuple[list[str], list[list[Any]]]:
    """The study's trials as a table: the columns of :data:`TRIAL_COLUMNS`, then each searched param."""
    trials = study.get_trials(deepcopy=False)
    keys = sorted({key for trial in trials for key in trial.params})
    rows = []
    for trial in trials:
        attributes = trial.user_attrs
        rows.append([trial.number, attributes.get("experiment", ""), trial.state.name,
                     "" if trial.value is None else f"{trial.value:.6g}", attributes.get("epochs", ""),
                     attributes.get("planned_epochs", ""), attributes.get("pruned_at_epoch", ""),
                     attributes.get("seconds", ""), *(trial.params.get(key, "") for key in keys)])
    return [*TRIAL_COLUMNS, *keys], rows


def summary_lines(study: Any, metric: str, workspace_value: float | None) -> list[str]:
    """The study's counts, the best trial against the workspace's own params, and how to take it."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    count = {state: sum(trial.state == state for trial in trials) for state in TrialState}
    lines = [f"study {study.study_name}: {count[TrialState.COMPLETE]} complete, {count[TrialState.PRUNED]} pruned, "
             f"{count[TrialState.FAIL]} failed"]
    pruned = [trial for trial in trials if trial.state == TrialState.PRUNED]
    planned = sum(int(trial.user_attrs.get("planned_epochs") or 0) for trial in pruned)
    if pruned and planned:
        ran = sum(int(trial.user_attrs.get("epochs") or 0) for trial in pruned)
        lines.append(f"pruning stopped {len(pruned)} trials after {ran} of their {planned} epochs")
    try:
        best = study.best_trial
    except ValueError:
        return [*lines, "no trial completed: nothing to take (see the trials' logs)"]
    baseline = f" (the workspace's params: {workspace_value:.4f})" if workspace_value is not None else ""
    name = best.user_attrs.get("experiment", str(best.number))
    return [*lines,
            f"best: {name}, {metric} {best.value:.4f}{baseline}",
            "  " + " ".join(f"-S {key}={flag_value(value)}" for key, value in best.params.items()),
            f"take it into the workspace: dvc exp apply {name}"]


def write_findings(study: Any, folder: Path) -> list[Path]:
    """trials.csv and Optuna's plots in ``folder``; a plot that cannot be drawn yet (importances need two
    complete trials) is left out with a line saying why."""
    import matplotlib

    matplotlib.use("Agg")
    import optuna.visualization.matplotlib as optuna_plots

    folder.mkdir(parents=True, exist_ok=True)
    columns, rows = trial_rows(study)
    write_csv(folder / "trials.csv", columns, rows)
    written = [folder / "trials.csv"]
    plots: dict[str, Callable[[Any], Any]] = {
        "history.png": optuna_plots.plot_optimization_history,
        "epochs.png": optuna_plots.plot_intermediate_values,
        "importances.png": optuna_plots.plot_param_importances,
    }
    for name, plot in plots.items():
        if name == "epochs.png" and not any(trial.intermediate_values for trial in study.get_trials(deepcopy=False)):
            continue  # no trial reported its epochs (the metric has no per-epoch score)
        with optional_step(f"{folder / name}"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
            axes = plot(study)
            axes.figure.set_size_inches(8, 5)
            axes.figure.tight_layout()
            axes.figure.savefig(folder / name, dpi=100)
            matplotlib.pyplot.close(axes.figure)
            written.append(folder / name)
    return written

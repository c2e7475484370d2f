"""The search file of ``imgclf tune`` (``tune.yaml`` beside params.yaml), parsed and checked once.

A file rather than command-line flags: the search is part of the project's history (git keeps
it beside the params it searches), it is reviewed in a pull request like any change, and five
ranges of floats need no shell quoting. What differs between machines (how many trials at once,
the study's storage, the git remote to push to) stays on the command line. docs/tuning.md
describes every key; an example::

    study: photos-search             # its experiments: photos-search-000, photos-search-001, ...
    metric: val_accuracy             # a key of a metrics file (or metrics/train.json:val_accuracy)
    direction: maximize
    trials: 16
    space:
      train.learning_rate: {log_uniform: [0.01, 0.2]}
      train.label_smoothing: {uniform: [0.0, 0.2]}
      train.batch_size: {choice: [32, 64]}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from imgclf.plumbing.params import ParamsError
from imgclf.recipes import check_settings
from imgclf.training.records import HISTORY_KEYS
from imgclf.tuning.errors import TuneError

SETTINGS_FILE = Path("tune.yaml")
KINDS = ("log_uniform", "uniform", "int", "choice")
Kind = Literal["log_uniform", "uniform", "int", "choice"]
# a study names its experiments <study>-000...: the name must be a valid part of a git ref
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


@dataclass(frozen=True)
class Dimension:
    """One searched param: its dotted key in params.yaml and the values to draw it from."""

    key: str
    kind: Kind
    values: tuple[Any, ...]  # (low, high) for log_uniform, uniform and int; the choices for choice

    def distribution(self) -> Any:
        """The Optuna distribution that draws this param's values."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "choice":
            return CategoricalDistribution(self.values)
        if self.kind == "int":
            return IntDistribution(int(self.values[0]), int(self.values[1]))
        return FloatDistribution(float(self.values[0]), float(self.values[1]), log=self.kind == "log_uniform")

    def describe(self) -> str:
        if self.kind == "choice":
            return f"{self.key} one of {', '.join(map(str, self.values))}"
        return f"{self.key} {self.kind.replace('_', '-')} in [{self.values[0]:g}, {self.values[1]:g}]"


@dataclass(frozen=True)
class TuneSettings:
    study: str
    space: tuple[Dimension, ...]
    metric: str = "val_accuracy"  # a metrics key, or FILE:KEY
    direction: Literal["maximize", "minimize"] = "maximize"
    trials: int = 16
    # trials proposed together: each from the trials finished before its round, so that the results
    # do not depend on how many run at once (--jobs)
    trials_per_round: int = 4
    seed: int = 0
    random_trials: int | None = None  # TPE's first trials, drawn at random (None: half the trials, at most 10)
    prune_after_epochs: int | None = 2  # None: never prune
    first_trials: tuple[dict[str, Any], ...] = field(default_factory=tuple)  # params to try first

    @property
    def startup_trials(self) -> int:
        return self.random_trials if self.random_trials is not None else min(10, max(1, self.trials // 2))

    def per_epoch_key(self) -> str | None:
        """The per-epoch score that stands for the metric while a trial trains (pruning compares it
        between trials): the metric itself where the training history holds it (val_accuracy), else
        its validation twin (accuracy: val_accuracy); None where there is none (no pruning)."""
        key = self.metric.split(":")[-1]
        if key in HISTORY_KEYS and key.startswith("val_"):
            return key
        return f"val_{key}" if f"val_{key}" in HISTORY_KEYS else None


def load_settings(path: Path, params: dict[str, Any], *, trials: int | None = None) -> TuneSettings:
    """Read and check the search file at ``path`` against the params mapping ``params`` (each range's
    ends and each choice must be a valid value of its param); ``trials`` overrides the file's."""
    try:
        document = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TuneError(f"no search file {path}: write one (docs/tuning.md has an example) or name it: "
                        "imgclf tune my_search.yaml") from None
    except YAMLError as error:
        raise TuneError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(document, dict):
        raise TuneError(f"{path}: expected a mapping with the keys {', '.join(_KEYS)}")
    settings = parse_settings(document, str(path), params)
    return settings if trials is None else _with_trials(settings, trials)


_KEYS = ("study", "metric", "direction", "trials", "trials_per_round", "seed", "random_trials",
         "prune_after_epochs", "first_trials", "space")


def parse_settings(document: dict[str, Any], source: str, params: dict[str, Any]) -> TuneSettings:
    unknown = sorted(set(document) - set(_KEYS))
    if unknown:
        raise TuneError(f"{source}: unknown key {unknown[0]}; the keys are {', '.join(_KEYS)}")
    study = document.get("study", "tune")
    if not isinstance(study, str) or not STUDY_NAME.fullmatch(study):
        raise TuneError(f"{source}: study = {study!r} is not allowed: use letters, digits, - and _ (it names "
                        "the experiments, as <study>-000)")
    direction = document.get("direction", "maximize")
    if direction not in ("maximize", "minimize"):
        raise TuneError(f"{source}: direction = {direction!r} is not allowed: choose maximize or minimize")
    metric = document.get("metric", "val_accuracy")
    if not isinstance(metric, str) or not metric:
        raise TuneError(f"{source}: metric = {metric!r}: name a key of a metrics file, e.g. val_accuracy or "
                        "metrics/evaluate.json:accuracy")
    space = _parse_space(document.get("space"), source, params)
    first_trials = _parse_first_trials(document.get("first_trials") or [], space, source, params)
    return TuneSettings(
        study=study, space=space, metric=metric, direction=direction,
        trials=_whole(document, "trials", 16, source, minimum=1),
        trials_per_round=_whole(document, "trials_per_round", 4, source, minimum=1),
        seed=_whole(document, "seed", 0, source, minimum=0),
        random_trials=_optional_whole(document, "random_trials", None, source, minimum=0),
        prune_after_epochs=_optional_whole(document, "prune_after_epochs", 2, source, minimum=1),
        first_trials=first_trials)


def _with_trials(settings: TuneSettings, trials: int) -> TuneSettings:
    if trials < 1:
        raise TuneError(f"--trials {trials}: give 1 or more")
    return replace(settings, trials=trials)


def _whole(document: dict[str, Any], key: str, default: int, source: str, minimum: int) -> int:
    value = document.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise TuneError(f"{source}: {key} = {value!r} is not allowed: use a whole number of {minimum} or more")
    return value


def _optional_whole(document: dict[str, Any], key: str, default: int | None, source: str, minimum: int) -> int | None:
    if document.get(key, default) is None:
        return None
    return _whole(document, key, default or minimum, source, minimum)


def _parse_space(space: Any, source: str, params: dict[str, Any]) -> tuple[Dimension, ...]:
    if not isinstance(space, dict) or not space:
        raise TuneError(f"{source}: space is empty: map each param to search to its range, e.g. "
                        "train.learning_rate: {log_uniform: [0.001, 0.1]}")
    return tuple(_parse_dimension(key, spec, source, params) for key, spec in space.items())


def _parse_dimension(key: str, spec: Any, source: str, params: dict[str, Any]) -> Dimension:
    where = f"{source}: space.{key}"
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in KINDS:
        raise TuneError(f"{where} = {spec!r}: give one of {', '.join(f'{{{kind}: ...}}' for kind in KINDS)}, "
                        "e.g. {log_uniform: [0.001, 0.1]} or {choice: [32, 64]}")
    kind, values = next(iter(spec.items()))
    if not isinstance(values, list) or not values:
        raise TuneError(f"{where}: {kind} takes a list: [low, high] or the choices")
    if kind == "choice":
        if any(not isinstance(value, (str, int, float, bool)) and value is not None for value in values):
            raise TuneError(f"{where}: a choice is a number, a string, true, false or null, not a list or mapping")
    else:
        _check_range(kind, values, where)
    for value in values:  # each end of a range, each choice: a value its param accepts
        _check_params({key: value}, params, where)
    return Dimension(key, kind, tuple(values))


def _check_range(kind: str, values: list[Any], where: str) -> None:
    numeric = all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in values)
    if len(values) != 2 or not numeric:
        raise TuneError(f"{where}: {kind} takes [low, high], two numbers; got {values!r}")
    low, high = values
    if not low < high:
        raise TuneError(f"{where}: the range [{low}, {high}] is empty: low must be below high")
    if kind == "log_uniform" and low <= 0:
        raise TuneError(f"{where}: log_uniform needs low > 0 (got {low}); use uniform for a range from 0")
    if kind == "int" and not (isinstance(low, int) and isinstance(high, int)):
        raise TuneError(f"{where}: int takes two whole numbers; got {values!r}")


def _parse_first_trials(first: Any, space: tuple[Dimension, ...], source: str,
                        params: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    keys = {dimension.key for dimension in space}
    if not isinstance(first, list) or any(not isinstance(trial, dict) for trial in first):
        raise TuneError(f"{source}: first_trials is a list of mappings of searched keys to values")
    for number, trial in enumerate(first):
        outside = sorted(set(trial) - keys)
        if outside:
            raise TuneError(f"{source}: first_trials[{number}] sets {outside[0]}, which space does not search")
        _check_params(trial, params, f"{source}: first_trials[{number}]")
    return tuple(first)


def _check_params(settings: dict[str, Any], params: dict[str, Any], origin: str) -> None:
    try:
        check_settings(settings, params, origin)
    except ParamsError as error:
        raise TuneError(str(error)) from None

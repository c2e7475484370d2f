"""The search: rounds of trials proposed by Optuna's TPE sampler, each run as a DVC experiment.

A round asks the study for ``trials_per_round`` trials at once, runs them (``--jobs`` at a time,
each ``dvc exp run --temp`` in a folder of its own, pinned to its share of the cores), then tells
the study each one's metric, read from the experiment's metrics file. Every trial of a round is
proposed from, and judged by the pruner against, the trials finished before the round, and the
sampler of a round is seeded from the study's seed and the round's place in it: the same study on
the same machine proposes the same trials whatever ``--jobs`` is, and training is deterministic,
so the results are the same too.

Several machines work on one study by running this same loop against one storage
(:mod:`imgclf.tuning.storage`): the storage hands out trial numbers, so no trial runs twice; each
worker counts the trials finished or running anywhere and stops when the study has its number;
a trial whose worker was killed is failed by the heartbeat and run again by someone else.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from imgclf.modeling.params import TrainParams
from imgclf.plumbing.params import PARAMS_FILE, parse_section
from imgclf.recipes import flag_value
from imgclf.tuning.errors import TuneError
from imgclf.tuning.settings import TuneSettings
from imgclf.tuning.storage import HEARTBEAT_SECONDS, hide_password, is_database, open_storage
from imgclf.tuning.trial import TrialLink

logger = logging.getLogger(__name__)

TRAIN_SUMMARY = "metrics/train.json"  # the train stage's: val_accuracy, val_loss, epochs, pruned_at_epoch


@dataclass(frozen=True)
class SearchOptions:
    storage: str  # a database URL or a journal file's path
    output: Path  # the study's folder: each trial's log, the findings
    jobs: int = 1  # trials at once on this machine
    push: str | None = None  # a git remote: dvc exp push each finished trial there
    project: Path = Path(".")


@dataclass(frozen=True)
class Metric:
    """The metric the search optimises: a key of one of the pipeline's metrics files."""

    file: str  # metrics/train.json
    key: str  # val_accuracy (dotted for a nested value)

    def __str__(self) -> str:
        return self.key

    def read(self, metrics: dict[str, Any]) -> float | None:
        value: Any = metrics
        for part in self.key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass
class TrialOutcome:
    number: int
    experiment: str
    params: dict[str, Any]
    state: str = "FAIL"  # COMPLETE | PRUNED | FAIL
    value: float | None = None
    epochs: int | None = None  # epochs trained
    planned_epochs: int | None = None  # epochs its params asked for
    pruned_at_epoch: int | None = None
    seconds: float = 0.0
    problem: str = ""


@dataclass
class SearchResult:
    study: Any  # the optuna Study
    metric: Metric
    workspace_value: float | None  # the metric of the workspace's own params (the baseline)
    outcomes: list[TrialOutcome] = field(default_factory=list)  # this worker's trials
    seconds: float = 0.0


def git(project: Path, *args: str, check: bool = True) -> str:
    result = subprocess.run(["git", *args], cwd=project, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise TuneError(f"git {' '.join(args)} failed in {project}: {result.stderr.strip()}")
    return result.stdout.strip() if result.returncode == 0 else ""


def experiment_ref(baseline: str, name: str) -> str:
    """Where DVC keeps the experiment ``name`` run from the commit ``baseline``."""
    return f"refs/exps/{baseline[:2]}/{baseline[2:]}/{name}"


def experiment_name(settings: TuneSettings, number: int) -> str:
    return f"{settings.study}-{number:03d}"


def resolve_metric(name: str, workspace_metrics: dict[str, dict[str, Any]]) -> Metric:
    """The metric ``name`` (``val_accuracy`` or ``metrics/train.json:val_accuracy``) among the metrics
    files as ``dvc metrics show`` lists them; a name no file (or several) holds raises :class:`TuneError`."""
    file, _, key = name.rpartition(":")
    holders = [path for path, values in workspace_metrics.items()
               if (not file or path == file) and Metric(path, key).read(values) is not None]
    if len(holders) == 1:
        return Metric(holders[0], key)
    if holders:
        raise TuneError(f"metric {name}: several metrics files hold it ({', '.join(holders)}); name one, "
                        f"e.g. metric: {holders[0]}:{key}")
    known = sorted({f"{path}:{key}" for path, values in workspace_metrics.items() for key in _numeric_keys(values)})
    raise TuneError(f"metric {name}: no metrics file holds it; the metrics are {', '.join(known) or 'none yet'} "
                    "(dvc metrics show)")


def _numeric_keys(values: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in values.items():
        if isinstance(value, dict):
            yield from _numeric_keys(value, f"{prefix}{key}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield f"{prefix}{key}"


def workspace_metrics(project: Path, log: Path) -> dict[str, dict[str, Any]]:
    """Each metrics file's values in the workspace: those ``dvc metrics show`` lists, and the train
    stage's summary (its validation scores, which ``dvc exp show`` leaves out to stay narrow)."""
    shown = _dvc(project, ["metrics", "show", "--json"], log)
    revisions: dict[str, Any] = json.loads(shown or "{}")  # {"": {"data": {file: {"data": values}}}}
    workspace: dict[str, Any] = next(iter(revisions.values()), {})
    files: dict[str, Any] = workspace.get("data", {})
    metrics = {path: entry.get("data", {}) for path, entry in files.items() if isinstance(entry, dict)}
    summary = project / TRAIN_SUMMARY
    if summary.is_file():
        metrics[TRAIN_SUMMARY] = json.loads(summary.read_text(encoding="utf-8"))
    return metrics


def _dvc(project: Path, args: Sequence[str], log: Path, env: dict[str, str] | None = None) -> str:
    """Run ``dvc ARGS``, its output appended to ``log``; its standard output, or TuneError naming the log."""
    result = subprocess.run(["dvc", *args], cwd=project, capture_output=True, text=True, env=env, check=False)
    with log.open("a", encoding="utf-8") as handle:
        handle.write(f"$ dvc {' '.join(args)}\n{result.stdout}{result.stderr}\n")
    if result.returncode != 0:
        raise TuneError(f"dvc {' '.join(args)} failed (exit {result.returncode}); its output is in {log}")
    return result.stdout


def run_search(settings: TuneSettings, options: SearchOptions) -> SearchResult:
    """Run the study ``settings.study`` until it holds ``settings.trials`` finished trials."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # the trials' heartbeats are this module's (_Heartbeat), not Study.optimize's, as Optuna warns they should be
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    started = time.perf_counter()
    project = options.project
    options.output.mkdir(parents=True, exist_ok=True)
    storage = open_storage(options.storage)  # first: an unreachable storage fails before anything runs
    baseline = git(project, "rev-parse", "--verify", "--quiet", "HEAD", check=False)
    if not baseline:
        raise TuneError("the project has no commit yet: commit it (git add -A && git commit), since every trial "
                        "is an experiment on top of a commit")
    workspace_log = options.output / "workspace.log"
    logger.info("bringing the workspace up to date first (dvc repro, output in %s): every trial starts from its "
                "data, and reruns only the stages its params change", workspace_log)
    _dvc(project, ["repro"], workspace_log)
    _require_results_in_git(project)
    metrics = workspace_metrics(project, workspace_log)
    metric = resolve_metric(settings.metric, metrics)
    workspace_value = metric.read(metrics[metric.file])
    study = _open_study(settings, options, storage, baseline)
    result = SearchResult(study, metric, workspace_value)
    logger.info("study %s in %s: %d trials of %s, %s %s from %s; %d at once here", settings.study,
                hide_password(options.storage), settings.trials,
                "; ".join(dimension.describe() for dimension in settings.space), settings.direction, metric,
                metric.file, options.jobs)
    with _Heartbeat(storage) as heartbeat:
        while True:
            proposed = _propose_round(study, settings, options, heartbeat)
            if proposed is None:
                break
            if not proposed and not heartbeat.beats:
                logger.info("the study's last trials are running elsewhere, and its storage keeps no heartbeats to "
                            "tell a running trial from a dead worker's: this worker stops here")
                break
            if not proposed:
                time.sleep(HEARTBEAT_SECONDS)  # the rest are running elsewhere: wait for them (or their failure)
                continue
            _run_round(proposed, settings, options, metric, baseline, study, heartbeat, result)
    result.seconds = time.perf_counter() - started
    return result


def _require_results_in_git(project: Path) -> None:
    """Each trial runs in a folder of its own made from git and the DVC cache: the workspace's dvc.lock
    and its git-tracked outputs (metrics/) must be in git, or every trial would rerun every stage."""
    untracked = git(project, "ls-files", "--others", "--exclude-standard", "--", "dvc.lock", "metrics").split()
    if untracked:
        raise TuneError(f"the workspace's results are not in git ({', '.join(untracked[:3])}"
                        f"{', ...' if len(untracked) > 3 else ''}): each trial would rerun every stage. Commit "
                        "them first: git add dvc.lock metrics && git commit -m 'pipeline results'")


def _open_study(settings: TuneSettings, options: SearchOptions, storage: Any, baseline: str) -> Any:
    import optuna

    study = optuna.create_study(storage=storage, study_name=settings.study, direction=settings.direction,
                                load_if_exists=True)
    existing = study.direction.name.lower()
    if existing != settings.direction:
        raise TuneError(f"the study {settings.study} in {hide_password(options.storage)} was made to {existing} "
                        f"its metric; name a new study to {settings.direction} it")
    if not study.get_trials(deepcopy=False):
        earlier = [ref for ref in git(options.project, "for-each-ref", "--format=%(refname)",
                                      experiment_ref(baseline, "")).splitlines()
                   if ref.rsplit("/", 1)[-1].startswith(f"{settings.study}-")]
        if earlier:
            raise TuneError(f"experiments named {settings.study}-... already exist ({earlier[0].rsplit('/', 1)[-1]}"
                            f"), from an earlier study of that name: choose another study name in the search file,"
                            f" or remove them (dvc exp remove {earlier[0].rsplit('/', 1)[-1]} ...)")
        for params in settings.first_trials:
            study.enqueue_trial(params)
    study.set_user_attr("metric", settings.metric)
    return study


@dataclass
class ProposedTrial:
    trial: Any  # optuna Trial
    link: TrialLink
    name: str


def _propose_round(study: Any, settings: TuneSettings, options: SearchOptions,
                   heartbeat: _Heartbeat) -> list[ProposedTrial] | None:
    """The next round's trials; [] while the study's missing trials run elsewhere; None when it has them all."""
    import numpy as np
    import optuna
    from optuna.trial import TrialState

    if is_database(options.storage):
        optuna.storages.fail_stale_trials(study)  # trials whose worker stopped beating: failed
    trials = study.get_trials(deepcopy=False)
    finished = [trial for trial in trials if trial.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    running = [trial for trial in trials if trial.state == TrialState.RUNNING]
    if len(finished) >= settings.trials:
        return None
    count = min(settings.trials_per_round, settings.trials - len(finished) - len(running))
    if count <= 0:
        return []
    seed = int(np.random.SeedSequence([settings.seed, len(trials)]).generate_state(1)[0])
    study.sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=settings.startup_trials,
                                               multivariate=True)
    compared_with = tuple(trial.number for trial in finished if trial.state == TrialState.COMPLETE)
    distributions = {dimension.key: dimension.distribution() for dimension in settings.space}
    proposed = []
    for _ in range(count):
        trial = study.ask(distributions)
        name = experiment_name(settings, trial.number)
        trial.set_user_attr("experiment", name)
        heartbeat.add(trial._trial_id)  # noqa: SLF001 (Optuna's own id of the trial, which its storage needs)
        link = TrialLink(storage=options.storage, study=settings.study, trial_id=trial._trial_id,  # noqa: SLF001
                         number=trial.number, per_epoch_key=settings.per_epoch_key(), direction=settings.direction,
                         prune_after_epochs=settings.prune_after_epochs, compared_with=compared_with)
        proposed.append(ProposedTrial(trial, link, name))
    return proposed


def _run_round(proposed: list[ProposedTrial], settings: TuneSettings, options: SearchOptions, metric: Metric,
               baseline: str, study: Any, heartbeat: _Heartbeat, result: SearchResult) -> None:
    from optuna.trial import TrialState

    core_sets: queue.Queue[set[int] | None] = queue.Queue()
    for share in _core_shares(options.jobs):
        core_sets.put(share)

    def run_one(item: ProposedTrial) -> TrialOutcome:
        cores = core_sets.get()
        try:
            return _run_trial(item, settings, options, metric, baseline, cores)
        finally:
            core_sets.put(cores)

    with ThreadPoolExecutor(max_workers=options.jobs) as pool:
        futures = [pool.submit(run_one, item) for item in proposed]
        try:
            outcomes = [future.result() for future in futures]
        except KeyboardInterrupt:
            for item in proposed:
                study.tell(item.trial, state=TrialState.FAIL, skip_if_finished=True)
            raise
    for item, outcome in zip(proposed, outcomes, strict=True):
        for key in ("epochs", "planned_epochs", "pruned_at_epoch", "problem"):
            if getattr(outcome, key):
                item.trial.set_user_attr(key, getattr(outcome, key))
        item.trial.set_user_attr("seconds", round(outcome.seconds, 1))
        if outcome.state == "COMPLETE":
            study.tell(item.trial, outcome.value)
        else:
            study.tell(item.trial, state=TrialState.PRUNED if outcome.state == "PRUNED" else TrialState.FAIL)
        heartbeat.remove(item.trial._trial_id)  # noqa: SLF001
        result.outcomes.append(outcome)
        _log_outcome(outcome, study, settings, metric)
        if options.push and outcome.state != "FAIL":
            _push(outcome.experiment, options)
    latest = result.outcomes[-max(3, settings.trials_per_round):]
    if len(latest) >= 3 and all(outcome.state == "FAIL" for outcome in latest):  # the project or the machine
        raise TuneError(f"the last {len(latest)} trials all failed, so the search stops here (a param may be wrong "
                        f"for every value, or the project fails to run); the first: {latest[0].problem}")


def _trial_environment(link: TrialLink) -> dict[str, str]:
    """A trial's environment: which trial it is, and TensorFlow's thread pools as large as this
    machine's cores whatever share of them the trial runs on. TensorFlow splits its sums by thread,
    so a trial on one of two cores with one thread would sum in another order, and train other
    weights, than the same trial alone with two; with two threads on its core it trains the same."""
    threads = str(len(_cores()) or os.cpu_count() or 1)
    return {"TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": threads, **os.environ,
            **link.to_environment()}


def _cores() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux: no pinning
        return []


def _core_shares(jobs: int) -> list[set[int] | None]:
    """Each concurrent trial's cores: an even share of this process's, or None (all) where they are fewer."""
    cores = _cores()
    if jobs == 1 or jobs > len(cores):
        return [None] * jobs
    return [set(cores[job::jobs]) for job in range(jobs)]


def _run_trial(item: ProposedTrial, settings: TuneSettings, options: SearchOptions, metric: Metric,
               baseline: str, cores: set[int] | None) -> TrialOutcome:
    """``dvc exp run --temp -n NAME -S ...`` for one trial; its outcome read from the experiment."""
    params = dict(item.trial.params)
    outcome = TrialOutcome(item.link.number, item.name, params)
    flags = [part for key, value in params.items() for part in ("-S", f"{key}={flag_value(value)}")]
    log = options.output / f"{item.name}.log"
    logger.info("trial %d (%s): %s", item.link.number, item.name,
                ", ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                          for key, value in params.items()))
    started = time.perf_counter()
    with log.open("w", encoding="utf-8") as handle:
        handle.write(f"$ dvc exp run --temp -n {item.name} {' '.join(flags)}\n")
        handle.flush()
        returncode = subprocess.run(
            ["dvc", "--wait-for-lock", "exp", "run", "--temp", "-n", item.name, *flags], cwd=options.project,
            env=_trial_environment(item.link), stdout=handle, stderr=subprocess.STDOUT,
            preexec_fn=(lambda: os.sched_setaffinity(0, cores)) if cores else None, check=False).returncode
    outcome.seconds = time.perf_counter() - started
    if returncode != 0:
        outcome.problem = f"dvc exp run exited {returncode}; its output is in {log}"
        return outcome
    def experiment_file(path: str | Path) -> str:
        return git(options.project, "show", f"{experiment_ref(baseline, item.name)}:{path}", check=False)

    train_text = experiment_file(TRAIN_SUMMARY)
    train = json.loads(train_text or "{}")
    outcome.value = metric.read(train if metric.file == TRAIN_SUMMARY else json.loads(experiment_file(metric.file)
                                                                                          or "{}"))
    outcome.epochs, outcome.pruned_at_epoch = train.get("epochs"), train.get("pruned_at_epoch")
    outcome.planned_epochs = _planned_epochs(experiment_file(PARAMS_FILE))
    if outcome.value is None:
        outcome.problem = f"the experiment's {metric.file} holds no {metric.key}"
    else:
        outcome.state = "PRUNED" if outcome.pruned_at_epoch is not None else "COMPLETE"
    return outcome


def _planned_epochs(params_text: str) -> int | None:
    """The epochs a trial's params.yaml asks for (training and fine-tuning)."""
    if not params_text:
        return None
    document = YAML(typ="safe").load(params_text) or {}
    return parse_section(TrainParams, document.get("train") or {}, "train").total_epochs


def _log_outcome(outcome: TrialOutcome, study: Any, settings: TuneSettings, metric: Metric) -> None:
    from optuna.trial import TrialState

    finished = sum(trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
                   for trial in study.get_trials(deepcopy=False))
    if outcome.state == "FAIL":
        logger.warning("trial %d (%s) failed after %.0f s: %s", outcome.number, outcome.experiment, outcome.seconds,
                       outcome.problem)
        return
    try:
        best = study.best_trial
        best_text = f"best {best.value:.4f} ({best.user_attrs.get('experiment', best.number)})"
    except ValueError:  # no complete trial yet
        best_text = "no complete trial yet"
    pruned = f", pruned after epoch {outcome.pruned_at_epoch}" if outcome.pruned_at_epoch is not None else ""
    logger.info("trial %d (%s): %s %.4f after %s epochs%s, %.0f s; %d of %d trials finished, %s", outcome.number,
                outcome.experiment, metric, outcome.value, outcome.epochs, pruned, outcome.seconds, finished,
                settings.trials, best_text)


def _push(experiment: str, options: SearchOptions) -> None:
    """Share a finished trial: its git ref and its data (dvc exp push), so the team's clones can pull it."""
    try:
        _dvc(options.project, ["exp", "push", options.push or "origin", experiment], options.output / "push.log")
    except TuneError as error:
        logger.warning("could not push %s to %s (%s); push it later with: dvc exp push %s %s", experiment,
                       options.push, error, options.push, experiment)


class _Heartbeat:
    """Record a heartbeat for each of this worker's running trials every few seconds, where the storage
    keeps them (the databases): a trial whose worker dies stops beating, and the others fail it."""

    def __init__(self, storage: Any) -> None:
        self._storage = storage if getattr(storage, "get_heartbeat_interval", lambda: None)() else None
        self._running: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    @property
    def beats(self) -> bool:
        """Whether the storage keeps heartbeats (a database does; Optuna's journal file does not)."""
        return self._storage is not None

    def add(self, trial_id: int) -> None:
        with self._lock:
            self._running.add(trial_id)
        self._record(trial_id)

    def remove(self, trial_id: int) -> None:
        with self._lock:
            self._running.discard(trial_id)

    def _record(self, trial_id: int) -> None:
        if self._storage is None:
            return
        try:
            self._storage.record_heartbeat(trial_id)
        except Exception as error:  # noqa: BLE001 (the database's errors: the next beat tries again)
            logger.warning("could not record trial %d's heartbeat (%s); trying again in %d s", trial_id, error,
                           HEARTBEAT_SECONDS)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            with self._lock:
                running = list(self._running)
            for trial_id in running:
                self._record(trial_id)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

"""``imgclf tune``: a search whose every trial is a DVC experiment (docs/tuning.md).

Unit tier: the search file's checks, the pruning rule, the storage's errors. End to end: the real
``imgclf tune`` through ``bash -c`` in a temporary git + DVC project on the digits, its trials
real ``dvc exp run``s; two tuners in two clones sharing one study on a real PostgreSQL server
started on 127.0.0.1, one of them killed mid-trial, and a third clone pulling every trial.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from imgclf.tuning.errors import TuneError
from imgclf.tuning.settings import TuneSettings, parse_settings
from imgclf.tuning.storage import hide_password, open_storage
from imgclf.tuning.trial import TrialLink, TrialReporter
from tests.doc_commands import NOT_RUN
from tests.helpers import command_env, make_project, run, set_params
from tests.servers import POSTGRES_PASSWORD, postgres_server

PARAMS = {"train": {"learning_rate": 0.001, "epochs": 3}}  # what the checks set the searched values into

# the search the end-to-end tests run: three trials of three epochs, two per round; the first two
# learn, the third's learning rate is hopeless, so the pruner stops it after its first epoch
SEARCH = """\
study: {study}
metric: val_accuracy
trials: 3
trials_per_round: 2
random_trials: 2
prune_after_epochs: 1
first_trials:
  - {{train.learning_rate: 0.002}}
  - {{train.learning_rate: 0.004}}
  - {{train.learning_rate: 0.0000001}}
space:
  train.learning_rate: {{log_uniform: [0.0000001, 0.01]}}
  train.label_smoothing: {{uniform: [0.0, 0.2]}}
"""


def bash(line: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """A command line as a user types it: through bash."""
    return run(["bash", "-c", line], cwd, check=check)


# ---- the search file


def settings(**overrides: object) -> TuneSettings:
    document = {"study": "s", "space": {"train.learning_rate": {"log_uniform": [0.0001, 0.1]}}, **overrides}
    return parse_settings(document, "tune.yaml", PARAMS)


@pytest.mark.parametrize(("document", "expected"), [
    ({"space": {"train.learnin_rate": {"uniform": [0.1, 0.2]}}}, "unknown key train.learnin_rate; the keys of train"),
    ({"space": {"trian.learning_rate": {"uniform": [0.1, 0.2]}}}, "trian.learning_rate is in no section"),
    ({"space": {"train.learning_rate": {"uniform": [0.2, 0.1]}}}, "the range [0.2, 0.1] is empty"),
    ({"space": {"train.learning_rate": {"log_uniform": [0, 0.1]}}}, "log_uniform needs low > 0"),
    ({"space": {"train.learning_rate": {"normal": [0, 1]}}}, "give one of {log_uniform: ...}"),
    ({"space": {"train.epochs": {"int": [0, 5]}}}, "train.epochs"),  # 0 epochs is no training: its own check
    ({"space": {"train.optimizer": {"choice": ["adam", "adamw2"]}}}, "choose one of"),
    ({"space": {}}, "space is empty"),
    ({"spaces": {}}, "unknown key spaces"),
    ({"study": "my study", "space": {"train.epochs": {"int": [1, 2]}}}, "use letters, digits, - and _"),
    ({"direction": "up", "space": {"train.epochs": {"int": [1, 2]}}}, "choose maximize or minimize"),
])
def test_a_bad_search_file_names_the_key_and_what_is_allowed(document, expected):
    with pytest.raises(TuneError) as raised:
        parse_settings({"study": "s", **document}, "tune.yaml", PARAMS)
    assert expected in str(raised.value)
    assert str(raised.value).startswith("tune.yaml")


def test_each_kind_draws_from_its_optuna_distribution_and_the_metric_finds_its_per_epoch_score():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    searched = settings(space={"train.learning_rate": {"log_uniform": [0.0001, 0.1]},
                               "train.label_smoothing": {"uniform": [0.0, 0.2]},
                               "train.epochs": {"int": [2, 8]},
                               "train.batch_size": {"choice": [32, 64]}})
    assert [dimension.distribution() for dimension in searched.space] == [
        FloatDistribution(0.0001, 0.1, log=True), FloatDistribution(0.0, 0.2), IntDistribution(2, 8),
        CategoricalDistribution((32, 64))]
    assert settings().per_epoch_key() == "val_accuracy"
    assert settings(metric="metrics/evaluate.json:accuracy", direction="maximize").per_epoch_key() == "val_accuracy"
    assert settings(metric="val_loss", direction="minimize").per_epoch_key() == "val_loss"
    assert settings(metric="macro_f1").per_epoch_key() is None  # no per-epoch score: no pruning


def test_the_shipped_search_files_are_valid_for_their_params():
    from imgclf.plumbing.params import read_params_file
    from imgclf.recipes import applied, load_recipe
    from imgclf.tuning.settings import load_settings
    from tests.helpers import PROJECT_ROOT

    params = read_params_file(PROJECT_ROOT / "params.yaml")
    assert load_settings(PROJECT_ROOT / "tune.yaml", params).trials == 16
    photos = applied(load_recipe("photos", PROJECT_ROOT / "recipes").settings, params, "recipe photos")
    search = load_settings(PROJECT_ROOT / "benchmarks" / "photos_search.yaml", photos)
    assert (search.trials, search.first_trials[0]["train.learning_rate"]) == (16, 0.05)  # the recipe's own first


# ---- pruning: Optuna's median rule, against the trials finished when the trial was proposed


def journal_study(tmp_path: Path, finished: dict[int, list[float]]) -> tuple[str, int]:
    """A study in a journal file whose trials 0, 1, ... finished with these per-epoch scores, and a
    running trial; the storage's path and the running trial's id."""
    import optuna

    tmp_path.mkdir(exist_ok=True)
    path = str(tmp_path / "study.log")
    study = optuna.create_study(study_name="s", storage=open_storage(path), direction="maximize")
    for scores in finished.values():
        trial = study.ask()
        for epoch, score in enumerate(scores, start=1):
            trial.report(score, epoch)
        study.tell(trial, scores[-1])
    return path, study.ask()._trial_id


def test_a_trial_below_the_median_of_the_trials_it_is_compared_with_stops_after_the_warm_up(tmp_path):
    storage, trial_id = journal_study(tmp_path, {0: [0.8, 0.9, 0.95], 1: [0.7, 0.85, 0.9]})
    link = TrialLink(storage=storage, study="s", trial_id=trial_id, number=2, per_epoch_key="val_accuracy",
                     direction="maximize", prune_after_epochs=2, compared_with=(0, 1))
    reporter = TrialReporter(link)
    assert reporter(1, {"val_accuracy": 0.1}) is False  # still warming up
    assert reporter(2, {"val_accuracy": 0.2}) is True  # 0.2 < the median 0.875 of 0.9 and 0.85
    good_storage, good_id = journal_study(tmp_path / "good", {0: [0.8, 0.9], 1: [0.7, 0.85]})
    good = TrialReporter(replace(link, storage=good_storage, trial_id=good_id))
    assert good(2, {"val_accuracy": 0.95}) is False


def test_a_trial_is_judged_only_against_the_trials_finished_when_it_was_proposed(tmp_path):
    storage, trial_id = journal_study(tmp_path, {0: [0.8, 0.9, 0.95]})
    link = TrialLink(storage=storage, study="s", trial_id=trial_id, number=1, per_epoch_key="val_accuracy",
                     direction="maximize", prune_after_epochs=1, compared_with=())  # proposed with trial 0
    assert TrialReporter(link)(2, {"val_accuracy": 0.1}) is False
    import optuna

    reported = optuna.load_study(study_name="s", storage=open_storage(storage)).trials[1].intermediate_values
    assert reported == {2: 0.1}  # reported all the same: Optuna's plots draw it


# ---- the storage


def test_an_unreachable_storage_is_named_without_its_password_and_says_what_to_check(tmp_path):
    from tests.helpers import PROJECT_ROOT
    from tests.servers import free_port

    for name in ("params.yaml", "tune.yaml"):
        (tmp_path / name).write_text((PROJECT_ROOT / name).read_text())
    url = f"postgresql://tuner:{POSTGRES_PASSWORD}@127.0.0.1:{free_port()}/studies"
    failed = bash(f"imgclf tune --storage {url}", tmp_path, check=False)
    assert failed.returncode == 1 and "Traceback" not in failed.stdout
    assert POSTGRES_PASSWORD not in failed.stdout and "postgresql://tuner:***@127.0.0.1" in failed.stdout
    assert "Connection refused" in failed.stdout and "Check that the database server runs" in failed.stdout
    assert hide_password("postgresql://a:b@c/d") == "postgresql://a:***@c/d"
    with pytest.raises(TuneError, match="does not exist"):
        open_storage(str(tmp_path / "not-mounted" / "study.log"))


# ---- end to end


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The default pipeline on the digits, three epochs, a search file; imgclf tune asks for the
    results of the workspace in git, and says so (each trial runs from git and the DVC cache)."""
    root = make_project(tmp_path_factory.mktemp("tune") / "project", heatmaps=False)
    set_params(root, **{"train.epochs": 3})
    (root / "tune.yaml").write_text(SEARCH.format(study="digits"))
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "three epochs; a search"], root)
    refused = bash("imgclf tune", root, check=False)
    assert refused.returncode == 1 and "git add dvc.lock metrics && git commit" in refused.stdout
    bash("git add dvc.lock metrics && git commit -qm 'the results'", root)
    return root


def trials_table(project: Path, study: str) -> list[dict[str, str]]:
    with open(project / "logs" / "tune" / study / "trials.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def documented_line(start: str) -> str:
    """A command line of docs/tuning.md that tests/doc_commands.py leaves to this file to run."""
    lines = [line for line in NOT_RUN if line.startswith(start)]
    assert len(lines) == 1, f"docs/tuning.md's line starting {start!r} is not among those listed in NOT_RUN"
    return lines[0]


@pytest.mark.slow
def test_every_trial_is_an_experiment_and_a_hopeless_one_is_pruned(project):
    ran = bash(documented_line("imgclf tune --jobs 2"), project)
    assert "take it into the workspace: dvc exp apply digits-00" in ran.stdout
    shown = json.loads(run(["dvc", "exp", "show", "--json", "--no-fetch"], project).stdout)
    experiments = {exp["name"]: exp["revs"][0]["data"] for baseline in shown for exp in (baseline.get("experiments")
                   or [])}
    assert set(experiments) == {"digits-000", "digits-001", "digits-002"}
    rates = {name: data["params"]["params.yaml"]["data"]["train"]["learning_rate"]
             for name, data in experiments.items()}
    assert rates == {"digits-000": 0.002, "digits-001": 0.004, "digits-002": 1e-07}
    assert all("metrics/evaluate.json" in data["metrics"] for data in experiments.values())
    table = {row["experiment"]: row for row in trials_table(project, "digits")}
    assert [table[name]["state"] for name in sorted(table)] == ["COMPLETE", "COMPLETE", "PRUNED"]
    assert table["digits-002"]["epochs"] == "1" and table["digits-002"]["planned_epochs"] == "3"
    pruned = run(["git", "show", f"{experiment_ref(project, 'digits-002')}:metrics/train.json"], project).stdout
    assert json.loads(pruned)["pruned_at_epoch"] == 1  # stopped, and still an experiment with its metrics
    for name in table:  # a search over train.* resizes nothing again
        log = (project / "logs" / "tune" / "digits" / f"{name}.log").read_text()
        assert "Running stage 'train'" in log and "Running stage 'resize'" not in log
        assert "A new study created" not in log  # Optuna's INFO lines stay out of the stage's log
    for figure in ("history.png", "epochs.png", "importances.png"):
        assert (project / "logs" / "tune" / "digits" / figure).stat().st_size > 10_000


def experiment_ref(project: Path, name: str) -> str:
    refs = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], project).stdout.split()
    return next(ref for ref in refs if ref.endswith(f"/{name}"))


@pytest.mark.slow
def test_one_at_a_time_and_resumed_the_same_seed_proposes_the_same_trials_with_the_same_results(project):
    """The search of the study "digits" again, as the study "again", one trial at a time and in two
    runs: its first two trials (--trials 2), then a later run that resumes it up to the file's three.
    The same trials, params and results as "digits" got two at a time in one run (each round's
    sampler is seeded from the study's seed and the round's place in it)."""
    (project / "tune_again.yaml").write_text(SEARCH.format(study="again"))
    bash("imgclf tune tune_again.yaml --jobs 1 --trials 2", project)
    stopped = [(row["experiment"], row["state"]) for row in trials_table(project, "again")]
    # the third of the first trials, enqueued when the study was made, waits for a later run
    assert stopped == [("again-000", "COMPLETE"), ("again-001", "COMPLETE"), ("", "WAITING")]
    resumed = bash("imgclf tune tune_again.yaml --jobs 1", project)  # up to the file's 3 trials: one more
    counts = re.search(r"study again: (\d+) complete, (\d+) pruned, 0 failed", resumed.stdout)
    assert counts and (int(counts.group(1)), int(counts.group(2))) == (2, 1), resumed.stdout
    first, again = trials_table(project, "digits"), trials_table(project, "again")
    assert [row["experiment"] for row in again] == ["again-000", "again-001", "again-002"]
    columns = ("number", "state", "value", "epochs", "train.learning_rate", "train.label_smoothing")
    assert [[row[key] for key in columns] for row in again] == [[row[key] for key in columns] for row in first]


@pytest.mark.slow
def test_on_a_journal_file_a_worker_does_not_wait_for_a_trial_no_heartbeat_can_vouch_for(project, tmp_path):
    import optuna

    journal = tmp_path / "shared" / "study.log"
    journal.parent.mkdir()
    optuna.create_study(study_name="journal", storage=open_storage(str(journal)), direction="maximize").ask()
    (project / "journal.yaml").write_text(SEARCH.format(study="journal").replace("trials: 3", "trials: 1"))
    started = time.monotonic()
    ran = bash(f"imgclf tune journal.yaml --storage {journal}", project)  # its one trial 'runs' on a dead worker
    assert "this worker stops here" in ran.stdout and time.monotonic() - started < 60


@pytest.mark.slow
def test_a_metric_that_no_metrics_file_holds_is_named_with_the_metrics_there_are(project):
    (project / "bad_metric.yaml").write_text(SEARCH.format(study="bad").replace("val_accuracy", "val_acuracy"))
    failed = bash("imgclf tune bad_metric.yaml", project, check=False)
    assert failed.returncode == 1 and "Traceback" not in failed.stdout
    assert "metric val_acuracy: no metrics file holds it; the metrics are" in failed.stdout
    assert "metrics/train.json:val_accuracy" in failed.stdout


@pytest.mark.slow
def test_two_machines_share_a_study_on_postgresql_one_killed_and_a_third_pulls_every_trial(tmp_path):
    with postgres_server() as storage:
        origin, remote = tmp_path / "origin.git", tmp_path / "dvc-remote"
        first = make_project(tmp_path / "a", heatmaps=False)
        set_params(first, **{"train.epochs": 3})
        (first / "tune.yaml").write_text(SEARCH.format(study="team").replace("trials_per_round: 2",
                                                                              "trials_per_round: 1"))
        run(["dvc", "remote", "add", "-d", "storage", str(remote)], first)
        run(["dvc", "repro"], first)
        run(["git", "add", "-A"], first)
        run(["git", "commit", "-qm", "first run; a search"], first)
        run(["dvc", "push"], first)
        run(["git", "init", "-q", "--bare", str(origin)], tmp_path)
        run(["git", "remote", "add", "origin", str(origin)], first)
        run(["git", "push", "-q", "origin", "HEAD"], first)
        workers = {}
        for name in ("b", "c"):
            run(["git", "clone", "-q", str(origin), str(tmp_path / name)], tmp_path)
            run(["dvc", "pull", "-q"], tmp_path / name)
        line = documented_line("imgclf tune --storage postgresql").replace("postgresql://tuner:secret@db.example/studies",
                                                                storage)
        for name in ("b", "c"):  # both machines start the same command
            workers[name] = subprocess.Popen(["bash", "-c", line], cwd=tmp_path / name, env=command_env(),
                                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                             start_new_session=True)
            time.sleep(5)
        killed = tmp_path / "c" / "logs" / "tune" / "team"
        deadline = time.monotonic() + 300
        while not any("epoch 1/3" in log.read_text() for log in killed.glob("team-*.log")):
            assert time.monotonic() < deadline and workers["c"].poll() is None, "c's trial never started training"
            time.sleep(1)
        os.killpg(workers["c"].pid, signal.SIGKILL)  # the machine dies: its tuner, dvc and the training with it
        workers["c"].wait()
        output, _ = workers["b"].communicate(timeout=600)
        assert workers["b"].returncode == 0, output[-4000:]
        assert POSTGRES_PASSWORD not in output

        import optuna

        trials = optuna.load_study(study_name="team", storage=open_storage(storage, heartbeat=False)).trials
        states = [trial.state.name for trial in trials]
        assert states.count("FAIL") == 1  # c's trial, failed by its silence
        assert len(states) == 4 and "RUNNING" not in states  # and the study went on to three finished trials
        finished = {trial.user_attrs["experiment"] for trial in trials if trial.state.name != "FAIL"}
        assert len(finished) == 3  # each trial once

        third = tmp_path / "d"
        run(["git", "clone", "-q", str(origin), str(third)], tmp_path)
        listed = run(["dvc", "exp", "list", "--names-only", "origin"], third).stdout.split()
        assert set(listed) == finished
        run(["dvc", "exp", "pull", "origin", *sorted(finished)], third)
        shown = run(["dvc", "exp", "show", "--no-pager", "--csv"], third).stdout
        assert all(name in shown for name in finished)

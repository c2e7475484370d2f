"""Every command line of the README, run through `bash -c` in a fresh clone, in the order a new user
meets them, on the real default (the 1,797 digits, params.yaml as committed).

The clone holds exactly what git tracks (in CI's fresh clone, what is committed), with the test's
`.venv` in it as `make setup` leaves it, so `make repro` skips the installation and runs the
pipeline. After it the clone must be as committed (`git status` clean: the default run rewrites
`dvc.lock` and `metrics/` byte for byte) and the run quiet (no ERROR or WARNING line). The README's
placeholders are real things: `/path/to/my_photos` a folder of class folders of real image files,
`photo.jpg` and `my_folder/` images of it, `<experiment>` the experiments the README's queue ran.
The recipe line runs in bash and then in zsh, as the README promises. tests/doc_commands.py lists
the lines left out (only `make test`: this suite).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from imgclf.recipes import load_recipe
from tests.doc_commands import README, DocLine, doc_lines, unlisted
from tests.helpers import (
    PROJECT_ROOT,
    alarming_lines,
    command_env,
    run,
    run_line,
    skip_unless_ci,
    write_image_folder,
)

pytestmark = pytest.mark.slow

STALE = "\n(after a code or params change, run `make repro` and commit dvc.lock and metrics/)"


def clone_working_tree(destination: Path) -> Path:
    """The project's tracked files as they are in this checkout (committed or not) in a new git repo:
    in CI's fresh clone, exactly what is committed. `.venv` is this test run's environment, and the
    offline plots page is the one `make setup` wrote; neither is tracked."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, check=True).stdout
    for name in filter(None, listed.split("\0")):
        source = PROJECT_ROOT / name
        if source.is_file() and not source.is_symlink():  # a tracked file deleted here is not copied
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    run(["git", "init", "-q", "-b", "main"], destination)
    run(["git", "add", "-A"], destination)
    run(["git", "commit", "-qm", "as committed"], destination)
    (destination / ".venv").symlink_to(PROJECT_ROOT / ".venv")
    # not the project's: a link (.gitignore's /.venv/ is for a folder) and the README's photo.jpg, my_folder/
    (destination / ".git" / "info" / "exclude").write_text(".venv\n/photo.jpg\n/my_folder/\n")
    shutil.copy2(PROJECT_ROOT / ".dvc" / "plots" / "offline.html", destination / ".dvc" / "plots" / "offline.html")
    return destination


def user_shell_env() -> dict[str, str]:
    """A new user's environment: the project's .venv is not on PATH until the README activates it."""
    env = command_env()
    venv_bin = str(PROJECT_ROOT / ".venv" / "bin")
    env["PATH"] = os.pathsep.join(part for part in env["PATH"].split(os.pathsep) if part != venv_bin)
    env.pop("VIRTUAL_ENV", None)
    env["CI"] = ""  # the README's lines as on a user's machine
    return env


def in_shell(shell: str, text: str, project: Path, activated: bool) -> str:
    """Run one command line as written, in a real shell; fail with what it printed when it fails."""
    script = f"source .venv/bin/activate\n{text}" if activated else text
    result = run_line(shell, script, project, user_shell_env())
    if result.returncode != 0:
        pytest.fail(f"{shell} -c {text!r} exited {result.returncode}:\n{result.stdout[-6000:]}")
    return result.stdout


def stop_queue_workers(project: Path) -> None:
    """End the `dvc queue start` workers still running in ``project`` (their pid files are DVC's):
    the queue is done, and a worker that missed its shutdown would otherwise outlive the test."""
    for pid_file in (project / ".dvc" / "tmp" / "exps" / "celery").glob("*.pid"):
        pid = int(pid_file.read_text())
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # it may end on its own meanwhile
            if b"queue-worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGTERM)


def code_and_params(lock_text: str) -> dict[str, Any]:
    """What `dvc.lock` records of each stage's command, code and params: none of it depends on the CPU."""
    stages = YAML(typ="safe").load(lock_text)["stages"]
    return {name: {"cmd": stage["cmd"], "params": stage.get("params"),
                   "code": {dep["path"]: dep["md5"] for dep in stage["deps"]
                            if dep["path"].startswith(("src/", "stages/"))}}
            for name, stage in stages.items()}


def check_the_clone_is_as_committed(clone: Path, output: str) -> None:
    """`make repro` in a fresh clone rewrites every tracked result byte for byte, quietly.

    Byte for byte holds on the same machine: a CPU with other vector instructions (metrics/train.json's
    ``device`` names them) runs other oneDNN kernels and gives other last digits. On such a machine
    only what does not depend on the CPU is compared: the code's and params' hashes in `dvc.lock`."""
    assert not alarming_lines(output), "a good run printed:\n" + "\n".join(alarming_lines(output))
    assert "test accuracy" in output
    changed = run(["git", "status", "--porcelain"], clone).stdout
    committed_device = json.loads(run(["git", "show", "HEAD:metrics/train.json"], clone).stdout)["device"]
    device = json.loads((clone / "metrics" / "train.json").read_text())["device"]
    if device == committed_device:
        assert changed == "", f"the reproduction changed committed files:\n{changed}\n" + \
            run(["git", "diff", "--", "dvc.lock"], clone).stdout[-4000:] + STALE
    else:
        warnings.warn(f"the committed results come from {committed_device}, this machine is {device}: only "
                      "the code's and params' hashes in dvc.lock are compared", stacklevel=1)
        committed_lock = run(["git", "show", "HEAD:dvc.lock"], clone).stdout
        assert code_and_params((clone / "dvc.lock").read_text()) == code_and_params(committed_lock), STALE
    assert "up to date" in run(["dvc", "status"], clone).stdout
    # the timings are kept, outside git and dvc.lock: each epoch's wall time beside its steps' time
    timing = json.loads((clone / "logs" / "train_timing.json").read_text())
    assert len(timing["per_epoch"]) == json.loads((clone / "metrics" / "train.json").read_text())["epochs"]
    assert all(epoch["overhead_ratio"] >= 1 and epoch["validation_seconds"] > 0 for epoch in timing["per_epoch"])


def flat(values: dict, prefix: str = "") -> dict:
    leaves: dict = {}
    for key, value in values.items():
        leaves.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return leaves


def test_every_readme_command_line_runs_in_a_real_shell_in_a_fresh_clone(tmp_path):
    if shutil.which("zsh") is None:
        skip_unless_ci("zsh is not installed (`make test` installs it where it runs as root)")
    clone = clone_working_tree(tmp_path / "clone")
    assert subprocess.run(["make", "-q", ".venv/.installed"], cwd=clone, env=user_shell_env()).returncode == 0, \
        "make setup would reinstall .venv (is .venv/.installed older than requirements.txt?)"
    my_photos = write_image_folder(tmp_path / "my_photos", ("cats", "dogs", "birds"), per_class=12)
    shutil.copy2(my_photos / "cats" / "001.jpg", clone / "photo.jpg")
    shutil.copytree(my_photos / "dogs", clone / "my_folder")
    placeholders = {"/path/to/my_photos": str(my_photos)}

    try:
        run_the_readme(clone, placeholders)
    finally:
        stop_queue_workers(clone)


def run_the_readme(clone: Path, placeholders: dict[str, str]) -> None:
    """Each of the README's command lines in turn, as written, each checked after it ran."""
    lines = unlisted(doc_lines(README))
    activated = False
    experiments: list[str] = []
    for line in lines:
        text = line.text
        for placeholder, value in placeholders.items():
            text = text.replace(placeholder, value)
        if "<experiment>" in text:
            text = text.replace("<experiment> <experiment>", " ".join(experiments[:2]))
            text = text.replace("<experiment>", experiments[0])
        started = time.monotonic()
        output = in_shell("bash", text, clone, activated)
        check_after(line, clone, output, experiments)
        print(f"{time.monotonic() - started:6.1f} s  {line.command}")
        activated = activated or line.command == "source .venv/bin/activate"
        if line.command.startswith("imgclf recipe photos --flags"):  # the same line in zsh
            run(["git", "checkout", "--", "params.yaml"], clone)
            in_shell("zsh", text, clone, activated)
            check_after(line, clone, "", experiments)
    assert activated and experiments, "the README's activation line and its queue ran"


def check_after(line: DocLine, clone: Path, output: str, experiments: list[str]) -> None:
    """What each line of the README promises, seen after it ran."""
    command = line.command
    if command == "make repro":
        check_the_clone_is_as_committed(clone, output)
    elif command == "dvc repro":
        assert "Data and pipelines are up to date" in output or "didn't change" in output, output
    elif command.startswith("dvc exp run --queue"):
        result = subprocess.run(["dvc", "queue", "status"], cwd=clone, env=command_env(), text=True,
                                capture_output=True, check=True)
        experiments.extend(queued_experiments(clone, result.stdout))
        # side by side, each with its own params and metrics
        learning_rates = {name: params_and_loss(clone, name) for name in experiments}
        assert sorted(rate for rate, _ in learning_rates.values()) == [0.003, 0.01], learning_rates
        assert len({loss for _, loss in learning_rates.values()}) == 2, learning_rates
    elif command.startswith("dvc exp show --only-changed"):
        shown = subprocess.run(["bash", "-c", "source .venv/bin/activate\n" + line.text + " --no-pager"], cwd=clone,
                               env={**user_shell_env(), "COLUMNS": "120"}, text=True, capture_output=True,
                               check=True).stdout
        # every changed param and metric whole; the README's three changed params, five metrics and the
        # queue's State and Executor columns are wider than 120 columns, which DVC leaves to the
        # terminal to scroll: tests/test_pipeline_dvc.py holds two experiments of one param to 120
        assert all(name in shown for name in experiments) and "…" not in shown, shown
    elif command.startswith("imgclf recipe photos --flags"):
        recipe = load_recipe("photos", clone / "recipes")
        params = flat(YAML(typ="safe").load((clone / "params.yaml").read_text()))
        assert {key: params[key] for key in recipe.settings} == recipe.settings
        assert params["data.source"] == "folder"
        assert json.loads((clone / "metrics/train.json").read_text())["epochs"] == recipe.settings["train.epochs"]
    elif command == "imgclf predict photo.jpg":
        assert output.startswith("photo.jpg: "), output
    elif command.startswith("imgclf predict my_folder/"):
        assert len((clone / "predictions.csv").read_text().splitlines()) == 1 + 12


def queued_experiments(clone: Path, status: str) -> list[str]:
    """`dvc queue start` returns at once: wait, as a user would, until `dvc queue status` shows the
    queue's runs finished. Their names."""
    deadline = time.monotonic() + 900
    while any(word in status for word in ("Running", "Queued")) and time.monotonic() < deadline:
        time.sleep(2)
        status = subprocess.run(["dvc", "queue", "status"], cwd=clone, env=command_env(), text=True,
                                capture_output=True, check=True).stdout
    rows = [row.split() for row in status.split("\n\n")[0].splitlines()[1:]]  # Task, Name, Created, Status
    assert rows and all(row[-1] == "Success" for row in rows), status
    return [row[1] for row in rows]


def params_and_loss(clone: Path, experiment: str) -> tuple[float, float]:
    """An experiment's train.learning_rate and test loss, as `dvc exp show` lists them."""
    shown = json.loads(run(["dvc", "exp", "show", "--json"], clone).stdout)
    for baseline in shown:
        for found in baseline.get("experiments") or ():
            if found.get("name") == experiment:
                data = found["revs"][0]["data"]
                return (data["params"]["params.yaml"]["data"]["train"]["learning_rate"],
                        data["metrics"]["metrics/evaluate.json"]["data"]["loss"])
    raise AssertionError(f"{experiment} is not in dvc exp show")

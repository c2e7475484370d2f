"""A fresh clone's reproduction leaves the checkout exactly as committed.

The repository commits `dvc.lock` and `metrics/` from the default run, so that `dvc metrics diff`
works on a fresh clone. `make repro` there runs every stage (no outputs, no DVC cache yet) and must
rewrite every tracked result byte for byte: `git status` clean, `dvc status` up to date. A timing
in a tracked output, a stale `dvc.lock` after a code change, or any nondeterminism shows here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import PROJECT_ROOT, run

pytestmark = pytest.mark.slow


def clone_working_tree(destination: Path) -> Path:
    """The project's tracked files as they are in this checkout (committed or not) in a new git repo:
    in CI's fresh clone, exactly what is committed."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, check=True).stdout
    for name in filter(None, listed.split("\0")):
        source = PROJECT_ROOT / name
        if source.is_file() and not source.is_symlink():  # a tracked file deleted here is not copied
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    run(["git", "init", "-q"], destination)
    run(["git", "add", "-A"], destination)
    run(["git", "commit", "-qm", "as committed"], destination)
    return destination


def test_repro_in_a_fresh_clone_leaves_git_status_clean_and_dvc_status_up_to_date(tmp_path):
    clone = clone_working_tree(tmp_path / "clone")
    assert (clone / "dvc.lock").is_file() and (clone / "metrics" / "train.json").is_file()

    run(["dvc", "repro"], clone)

    changed = run(["git", "status", "--porcelain"], clone).stdout
    assert changed == "", f"the reproduction changed committed files:\n{changed}\n" + \
        run(["git", "diff", "--", "dvc.lock"], clone).stdout[-4000:] + "\n(after a code or params change, run " \
        "`make repro` and commit dvc.lock and metrics/)"
    assert "up to date" in run(["dvc", "status"], clone).stdout
    # the timings are kept, outside git and dvc.lock: each epoch's wall time beside its steps' time
    timing = json.loads((clone / "logs" / "train_timing.json").read_text())
    assert len(timing["per_epoch"]) == json.loads((clone / "metrics" / "train.json").read_text())["epochs"]
    assert all(epoch["overhead_ratio"] >= 1 and epoch["validation_seconds"] > 0 for epoch in timing["per_epoch"])

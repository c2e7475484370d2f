"""A fresh clone's reproduction leaves the checkout exactly as committed.

The repository commits `dvc.lock` and `metrics/` from the default run, so that `dvc metrics diff`
works on a fresh clone. `make repro` there runs every stage (no outputs, no DVC cache yet) and must
rewrite every tracked result byte for byte: `git status` clean, `dvc status` up to date. A timing
in a tracked output, a stale `dvc.lock` after a code change, or any nondeterminism shows here.

Byte for byte holds on the same machine: a CPU with other vector instructions (metrics/train.json's
``device`` names them) runs other oneDNN kernels and gives other last digits. On such a machine the
test checks what does not depend on the CPU: the code's and params' hashes in `dvc.lock`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.helpers import PROJECT_ROOT, alarming_lines, run

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


def code_and_params(lock_text: str) -> dict[str, Any]:
    """What `dvc.lock` records of each stage's command, code and params: none of it depends on the CPU."""
    stages = YAML(typ="safe").load(lock_text)["stages"]
    return {name: {"cmd": stage["cmd"], "params": stage.get("params"),
                   "code": {dep["path"]: dep["md5"] for dep in stage["deps"]
                            if dep["path"].startswith(("src/", "stages/"))}}
            for name, stage in stages.items()}


def test_repro_in_a_fresh_clone_leaves_git_status_clean_and_dvc_status_up_to_date(tmp_path):
    clone = clone_working_tree(tmp_path / "clone")
    assert (clone / "dvc.lock").is_file() and (clone / "metrics" / "train.json").is_file()

    output = run(["dvc", "repro"], clone).stdout
    assert not alarming_lines(output), "a good run printed:\n" + "\n".join(alarming_lines(output))  # quiet

    changed = run(["git", "status", "--porcelain"], clone).stdout
    committed_device = json.loads(run(["git", "show", "HEAD:metrics/train.json"], clone).stdout)["device"]
    device = json.loads((clone / "metrics" / "train.json").read_text())["device"]
    stale = "\n(after a code or params change, run `make repro` and commit dvc.lock and metrics/)"
    if device == committed_device:
        assert changed == "", f"the reproduction changed committed files:\n{changed}\n" + \
            run(["git", "diff", "--", "dvc.lock"], clone).stdout[-4000:] + stale
    else:
        warnings.warn(f"the committed results come from {committed_device}, this machine is {device}: only "
                      "the code's and params' hashes in dvc.lock are compared", stacklevel=1)
        committed_lock = run(["git", "show", "HEAD:dvc.lock"], clone).stdout
        assert code_and_params((clone / "dvc.lock").read_text()) == code_and_params(committed_lock), stale
    assert "up to date" in run(["dvc", "status"], clone).stdout
    # the timings are kept, outside git and dvc.lock: each epoch's wall time beside its steps' time
    timing = json.loads((clone / "logs" / "train_timing.json").read_text())
    assert len(timing["per_epoch"]) == json.loads((clone / "metrics" / "train.json").read_text())["epochs"]
    assert all(epoch["overhead_ratio"] >= 1 and epoch["validation_seconds"] > 0 for epoch in timing["per_epoch"])

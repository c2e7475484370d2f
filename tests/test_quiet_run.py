"""A good run is quiet: the default pipeline, on a machine without a GPU, prints no ERROR or WARNING.

The real `dvc repro` on the default params (the 1,797 digits) on JAX here; on TensorFlow, the
default backend, tests/test_readme_commands.py checks the same of `make repro` in a fresh clone. TensorFlow's,
XLA's, absl's and JAX's start-up lines of a healthy machine are left out at their source
(imgclf.plumbing.native_logs) and come back with IMGCLF_VERBOSE=1.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.helpers import alarming_lines, command_env, make_project, set_params


def repro(project) -> str:
    result = subprocess.run(["dvc", "repro"], cwd=project, env=command_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    assert result.returncode == 0, result.stdout[-6000:]
    return result.stdout


@pytest.mark.slow
def test_the_default_pipeline_on_jax_prints_no_error_or_warning(tmp_path):
    project = make_project(tmp_path / "project")
    # the default pipeline on JAX, 3 epochs instead of 30 (JAX trains them half as fast on a CPU):
    # what a run prints does not depend on how many epochs it trains
    set_params(project, **{"train.backend": "jax", "train.epochs": 3})
    output = repro(project)
    alarming = alarming_lines(output)
    assert not alarming, "a good run printed:\n" + "\n".join(alarming)
    assert "test accuracy" in output  # the stages' own log lines still show


NOISY_STAGE = """
import os, logging
from imgclf.plumbing.stage import run_stage

def main():
    os.write(2, b"E0000 00:00:1796292886.9 3144 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)\\n")
    os.write(2, b"E0000 something else went wrong\\n")
    logging.getLogger("stage").info("the stage's own line")

run_stage(main)
"""


@pytest.mark.parametrize("verbose", ["", "1"])
def test_expected_native_lines_are_left_out_unless_imgclf_verbose(verbose):
    """Written straight to file descriptor 2, as C++ libraries write: the expected line is dropped,
    an unknown one and the stage's own log pass; IMGCLF_VERBOSE=1 passes everything."""
    import sys

    result = subprocess.run([sys.executable, "-c", NOISY_STAGE], env={**command_env(), "IMGCLF_VERBOSE": verbose},
                            text=True, capture_output=True, check=True)
    assert ("failed call to cuInit" in result.stderr) == bool(verbose)
    assert "something else went wrong" in result.stderr and "the stage's own line" in result.stderr

"""What a stage's process spends around its work: imports without repeated collections, Keras without
the integrations it never uses, an exit without a collection.

``benchmarks/turnaround.py`` measures what these save (the time between DVC's stages and the train
stage's imports); these tests hold what they do.
"""

from __future__ import annotations

import gc
import json
import platform
import subprocess
import sys

import pytest

from imgclf.plumbing.stage import collector_paused, run_stage
from tests.helpers import PROJECT_ROOT, command_env


def test_the_collector_is_paused_for_the_imports_and_runs_again_after_them():
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_the_collector_runs_again_when_an_import_fails():
    with pytest.raises(ImportError), collector_paused():
        import imgclf_no_such_module  # noqa: F401
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off():
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_stage_freezes_its_objects_at_exit_after_the_exit_handlers_of_what_it_imported():
    """The freeze waits for the exit (a stage run inside another process, as some of these tests run
    them, leaves that process's collector as it was), and comes after the exit handlers registered
    by what ``main`` imported (registered later, they run first)."""
    script = (
        "import atexit, gc\n"
        "def frozen(when): print(when, gc.get_freeze_count() > 0)\n"
        "atexit.register(frozen, 'frozen at exit, at the end:')\n"
        "def main():\n"
        "    atexit.register(frozen, 'frozen at exit, by a library of main:')\n"
        "    frozen('frozen in main:')\n"
        "from imgclf.plumbing.stage import run_stage\n"
        "run_stage(main)\n"
        "frozen('frozen after run_stage:')\n")
    result = subprocess.run([sys.executable, "-c", script], env=command_env(), text=True, capture_output=True,
                            check=True)
    assert result.stdout.splitlines() == [
        "frozen in main: False", "frozen after run_stage: False",
        "frozen at exit, by a library of main: False", "frozen at exit, at the end: True"]


def test_a_stage_run_in_this_process_freezes_nothing_before_it_ends():
    frozen_before = gc.get_freeze_count()
    run_stage(lambda: None)
    assert gc.get_freeze_count() == frozen_before


def _modules_after_import_keras(backend: str, first: str = "") -> dict[str, bool]:
    """Which of Keras, TensorFlow, scikit-learn and JAX a fresh process on ``backend`` holds after
    ``first`` (Python statements) and :func:`imgclf.modeling.backend.import_keras`, and whether both
    hidden libraries then import as usual."""
    script = (
        "import json, sys\n"
        f"{first}\n"
        "from imgclf.modeling.backend import import_keras, use_backend\n"
        f"use_backend({backend!r})\n"
        "import_keras()\n"
        "held = {name: name in sys.modules for name in ('keras', 'tensorflow', 'sklearn', 'jax')}\n"
        "import sklearn.base, jax.numpy\n"
        "held['import afterwards'] = True\n"
        "print(json.dumps(held))\n")
    env = command_env()
    env.pop("KERAS_BACKEND", None)
    result = subprocess.run([sys.executable, "-c", script], env=env, text=True, capture_output=True, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def test_keras_imports_without_scikit_learn_and_jax_which_import_as_usual_afterwards():
    assert _modules_after_import_keras("tensorflow") == {
        "keras": True, "tensorflow": True, "sklearn": False, "jax": False, "import afterwards": True}


def test_the_jax_backend_keeps_its_jax_and_a_library_imported_before_stays():
    assert _modules_after_import_keras("jax", first="import sklearn") == {
        "keras": True, "tensorflow": False, "sklearn": True, "jax": True, "import afterwards": True}


def _onednn_on_after_use_backend(preset: str | None) -> bool:
    """Whether TensorFlow runs its oneDNN kernels in a fresh process that called ``use_backend`` and
    imported Keras, with ``TF_ENABLE_ONEDNN_OPTS`` at ``preset`` beforehand (``None``: unset)."""
    script = ("from imgclf.modeling.backend import import_keras, use_backend\n"
              "use_backend('tensorflow')\n"
              "import_keras()\n"
              "from tensorflow.python.util import _pywrap_util_port\n"
              "print(_pywrap_util_port.IsMklEnabled())\n")
    env = command_env()
    env.pop("KERAS_BACKEND", None)
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    if preset is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = preset
    result = subprocess.run([sys.executable, "-c", script], env=env, text=True, capture_output=True, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.split()[-1] == "True"


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="oneDNN is turned on on x86 only")
def test_tensorflow_trains_through_onednn_on_every_x86_cpu_unless_a_person_turned_it_off():
    # TensorFlow alone leaves oneDNN off on a CPU without AVX-512 VNNI, BF16 or AMX (AVX2: 1.77x slower)
    assert _onednn_on_after_use_backend(None) is True
    assert _onednn_on_after_use_backend("0") is False  # a person's setting is kept


HEAVY_LIBRARIES = ("sklearn", "scipy", "pandas", "keras", "tensorflow", "jax", "matplotlib", "onnxruntime", "cleanlab")


@pytest.mark.parametrize("script", sorted(path.name for path in (PROJECT_ROOT / "stages").glob("*.py")))
def test_a_stage_script_imports_its_libraries_in_main_not_at_the_top(script):
    """A stage's worker processes start from a server process that imports the stage's script (not as
    ``__main__``: its ``main`` does not run). The split stage's imported scikit-learn there, 0.7 s of
    every split before its hashing began."""
    probe = ("import json, runpy, sys\n"
             f"runpy.run_path({str(PROJECT_ROOT / 'stages' / script)!r}, run_name='__mp_main__')\n"
             f"print(json.dumps([name for name in {HEAVY_LIBRARIES!r} if name in sys.modules]))\n")
    result = subprocess.run([sys.executable, "-c", probe], env=command_env(), text=True, capture_output=True,
                            check=True)
    assert json.loads(result.stdout) == []

"""The benchmarks say whether their targets were met with their exit status, after their figures."""

from __future__ import annotations

import ast
import importlib.util

import pytest

from tests.helpers import PROJECT_ROOT

BENCHMARKS = PROJECT_ROOT / "benchmarks"


def load_targets_module():
    spec = importlib.util.spec_from_file_location("targets", BENCHMARKS / "targets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_missed_target_makes_the_exit_status_1_and_is_named(capsys):
    targets = load_targets_module().Targets()
    assert targets.check("no-op dvc repro < 5 s", True) == "met"
    assert targets.exit_status() == 0
    assert targets.check("loader >= 5x", False) == "NOT met"
    assert targets.exit_status() == 1
    assert "targets NOT met: loader >= 5x" in capsys.readouterr().err


@pytest.mark.parametrize("script", sorted(path.name for path in BENCHMARKS.glob("*.py") if path.name != "targets.py"))
def test_every_benchmark_returns_its_targets_exit_status(script):
    """Each script's main ends with `return targets.exit_status()`, and prints no verdict of its own."""
    source = (BENCHMARKS / script).read_text()
    main = next(node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef) and node.name == "main")
    final = main.body[-1]
    assert isinstance(final, ast.Return) and ast.unparse(final) == "return targets.exit_status()", script
    assert "'met' if" not in source and '"met" if' not in source, f"{script} decides a target outside Targets"

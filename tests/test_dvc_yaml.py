"""dvc.yaml's dependencies are complete: each stage lists exactly the src/ modules its script imports.

A module a stage uses but does not list would let `dvc repro` keep results that a code change made
stale, silently; one it lists but does not use reruns the stage for nothing. The import closure is
computed from the code itself, imports inside functions included (the stages import Keras and
most of the library lazily), a module run as a process of its own (``[sys.executable, "-m",
"imgclf.reporting.explain", ...]``) included, imports only for the type checker (``if
TYPE_CHECKING:``) left out.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.helpers import PROJECT_ROOT
from tests.imports import PACKAGE, SOURCE_ROOT, import_closure


def stage_scripts(dvc_yaml: Path) -> dict[str, tuple[list[Path], list[str]]]:
    """Each stage's scripts (the ``python stages/x.py`` of each of its commands) and its listed dependencies."""
    stages = YAML(typ="safe").load(dvc_yaml.read_text())["stages"]
    scripts = {}
    for name, stage in stages.items():
        commands = stage["cmd"] if isinstance(stage["cmd"], list) else [stage["cmd"]]
        paths = []
        for command in commands:
            words = shlex.split(command)
            assert words[0] == "python" and words[1].endswith(".py"), f"stage {name}: cmd must run `python <script>`"
            paths.append(dvc_yaml.parent / words[1])
        scripts[name] = (paths, [str(dep) for dep in stage["deps"]])
    return scripts


def dependency_problems(dvc_yaml: Path, source_root: Path) -> list[str]:
    """Every module dvc.yaml lists too few or too many, each said the way a person fixes it."""
    problems = []
    project = dvc_yaml.parent
    for stage, (scripts, deps) in stage_scripts(dvc_yaml).items():
        script_names = [script.relative_to(project).as_posix() for script in scripts]
        for script_name in script_names:
            if script_name not in deps:
                problems.append(f"stage {stage!r}: add {script_name} (the stage's own script) to its deps")
        listed = {dep for dep in deps if dep.startswith(source_root.relative_to(project).as_posix() + "/")}
        closure: dict[str, tuple[str, list[str]]] = {}  # module -> (the script importing it, the chain)
        for script, script_name in zip(scripts, script_names, strict=True):
            for path, chain in import_closure(script, source_root).items():
                closure.setdefault(path.relative_to(project).as_posix(), (script_name, chain))
        for missing in sorted(set(closure) - listed):
            script_name, chain = closure[missing]
            problems.append(f"stage {stage!r}: add {missing} to its deps in dvc.yaml; {script_name} imports it "
                            f"through {' -> '.join(chain)}")
        for unused in sorted(listed - set(closure)):
            problems.append(f"stage {stage!r}: remove {unused} from its deps in dvc.yaml; {' and '.join(script_names)} "
                            "never import it")
    return problems


def test_every_stage_lists_exactly_the_modules_its_script_imports():
    problems = dependency_problems(PROJECT_ROOT / "dvc.yaml", SOURCE_ROOT)
    assert not problems, "dvc.yaml's deps do not match the code:\n" + "\n".join(problems)


def test_the_closure_follows_imports_inside_functions_and_skips_type_checking_blocks(tmp_path):
    package = tmp_path / "src" / PACKAGE
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from . import deep\n")
    (package / "sub" / "deep.py").write_text("")
    (package / "lazy.py").write_text("def later():\n    from imgclf.sub import deep\n")
    (package / "typed.py").write_text("")
    (package / "unused.py").write_text("")
    script = tmp_path / "stage.py"
    script.write_text("from typing import TYPE_CHECKING\nimport numpy\n"
                      "if TYPE_CHECKING:\n    import imgclf.typed\n"
                      "def main():\n    from imgclf import lazy\n")
    closure = import_closure(script, tmp_path / "src")
    assert sorted(path.relative_to(package).as_posix() for path in closure) == [
        "__init__.py", "lazy.py", "sub/__init__.py", "sub/deep.py"]
    assert closure[package / "sub" / "deep.py"] == ["imgclf.lazy", "imgclf.sub.deep"]


@pytest.mark.parametrize("change", ["forget", "extra"])
def test_the_guard_names_the_stage_and_the_module_when_a_line_is_wrong(tmp_path, change):
    text = (PROJECT_ROOT / "dvc.yaml").read_text()
    if change == "forget":  # the train stage no longer lists augment.py
        broken = text.replace("      - src/imgclf/modeling/augment.py\n", "", 1)
        expected = ("stage 'train': add src/imgclf/modeling/augment.py to its deps in dvc.yaml; "
                    "stages/train.py imports it")
    else:  # the split stage lists a module it never imports
        broken = text.replace("      - src/imgclf/data/split.py\n",
                              "      - src/imgclf/data/split.py\n      - src/imgclf/modeling/models.py\n", 1)
        expected = "stage 'split': remove src/imgclf/modeling/models.py"
    (tmp_path / "dvc.yaml").write_text(broken)
    (tmp_path / "stages").symlink_to(PROJECT_ROOT / "stages")
    (tmp_path / "src").symlink_to(SOURCE_ROOT)
    problems = dependency_problems(tmp_path / "dvc.yaml", tmp_path / "src")
    assert len(problems) == 1 and expected in problems[0], problems

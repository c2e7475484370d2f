"""The package's layout holds: each sub-package imports only those below it, none in a loop, and the
data path and the params checks never load Keras.

docs/development.md, "Layout", lists the packages from the ground up; a module that imports one listed after its
own package (data importing modeling, say) fails here with the import to move. Imports inside
functions count (the stages and the CLI import most of the library lazily); imports only for the
type checker do not.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import PROJECT_ROOT, command_env
from tests.imports import SOURCE_ROOT, imported_modules

PACKAGE_ROOT = SOURCE_ROOT / "imgclf"
# From the ground up, as docs/development.md lists them; the modules at the top (cli, recipes, sections) may use all.
LAYERS = ("plumbing", "data", "modeling", "training", "reporting", "serving", "tuning")
# tuning/ drives the whole pipeline through DVC, as the command line does: it may use the modules at the top too
ABOVE_THE_TOP = ("tuning",)
INDEPENDENT = {("training", "reporting")}  # neither imports the other: the train stage uses both
KERAS_FREE = ("plumbing", "data")  # their modules import neither Keras nor TensorFlow, anywhere


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) >= 2 and parts[1] in LAYERS else None


def library_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE_ROOT.rglob("*.py"))}


MODULES = library_modules()


def imports_of(module: str, path: Path) -> set[str]:
    """The package's own modules that ``module`` imports (names that are modules or packages)."""
    return {name for name in imported_modules(path, module) if name in MODULES and name != module}


def test_every_module_sits_in_a_package_of_the_layout_or_at_the_top():
    top = {name for name in MODULES if name.count(".") == 1 and package_of(name) is None}
    assert top == {"imgclf.cli", "imgclf.recipes", "imgclf.sections"}
    assert {path.name for path in PACKAGE_ROOT.iterdir() if path.is_dir() and path.name != "__pycache__"} == set(LAYERS)


def test_no_package_imports_one_above_it():
    upward = []
    for module, path in MODULES.items():
        own = package_of(module)
        if own is None:
            continue
        for name in imports_of(module, path):
            other = package_of(name)
            if other is None and name.count(".") >= 1 and name != "imgclf" and own not in ABOVE_THE_TOP:
                upward.append(f"{module} imports {name}, which stands above every package")
            elif other is not None and other != own and LAYERS.index(other) > LAYERS.index(own):
                upward.append(f"{module} imports {name}: {own}/ stands below {other}/")
            elif other is not None and (own, other) in INDEPENDENT | {pair[::-1] for pair in INDEPENDENT}:
                upward.append(f"{module} imports {name}: {own}/ and {other}/ stay independent")
    assert not upward, "\n".join(upward)


def test_no_modules_import_each_other_in_a_loop():
    graph = {module: imports_of(module, path) for module, path in MODULES.items()}
    loops = []

    def visit(module: str, chain: list[str]) -> None:
        for name in sorted(graph.get(module, ())):
            if name in chain:
                loops.append(" -> ".join([*chain[chain.index(name):], name]))
            elif name not in seen:
                seen.add(name)
                visit(name, [*chain, name])

    for start in sorted(graph):
        seen = {start}
        visit(start, [start])
    assert not loops, "\n".join(sorted(set(loops)))


@pytest.mark.parametrize("package", KERAS_FREE)
def test_the_data_path_and_the_plumbing_never_import_keras(package):
    heavy = {module: sorted(name for name in imported_modules(path, module)
                            if name.split(".")[0] in ("keras", "tensorflow", "jax", "torch"))
             for module, path in MODULES.items() if package_of(module) == package}
    assert not {module: names for module, names in heavy.items() if names}


def test_every_params_section_is_checked_without_loading_keras():
    """The stages check their params before importing Keras, so that a bad param fails in a second:
    the sections, the network registry whose names ``train.model`` allows, the data stages' imports."""
    code = ("import sys\n"
            "import imgclf.sections, stages.download, stages.split, stages.resize, stages.train, stages.evaluate\n"
            "from imgclf.sections import SECTIONS\n"
            "from imgclf.plumbing.params import parse_section\n"
            "[parse_section(cls, {}, key) for key, cls in SECTIONS.items()]\n"
            "print(sorted({'keras', 'tensorflow'} & set(sys.modules)))\n")
    output = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, env=command_env(), check=True,
                            capture_output=True, text=True).stdout
    assert output.strip() == "[]"

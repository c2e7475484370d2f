"""What a file of the package imports, read from its code (no import runs): for the checks that
dvc.yaml lists each stage's modules (tests/test_dvc_yaml.py) and that the packages import only
downwards (tests/test_layout.py). Imports inside functions count; those only for the type checker
(``if TYPE_CHECKING:``) do not.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import PROJECT_ROOT

PACKAGE = "imgclf"
SOURCE_ROOT = PROJECT_ROOT / "src"


def module_file(module: str, source_root: Path) -> Path | None:
    """The file of a module of the package (``imgclf.data.images`` -> src/imgclf/data/images.py), or None."""
    base = source_root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking_block(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_modules(path: Path, module: str | None = None, *, processes: bool = False) -> set[str]:
    """Every module name an import statement of ``path`` may load, anywhere in the file; with
    ``processes``, also every module it runs as a process of its own (``[sys.executable, "-m",
    "imgclf.reporting.explain", ...]``: its code decides the caller's outputs, but it is no import).

    ``from a import b`` yields ``a`` and ``a.b`` (b may be a submodule); relative imports are
    resolved against ``module``, the file's own dotted name.
    """
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking_block(node):
            for statement in node.orelse:  # the else branch runs
                visit(statement)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = (module or "").split(".")
                package = package[: len(package) - node.level + (path.name == "__init__.py")]
                base = ".".join(filter(None, [*package, base]))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif processes and isinstance(node, ast.List):  # a command that runs a module
            words = [item.value if isinstance(item, ast.Constant) else None for item in node.elts]
            found.update(module for flag, module in zip(words, words[1:], strict=False)
                         if flag == "-m" and isinstance(module, str))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return found


def import_closure(script: Path, source_root: Path = SOURCE_ROOT) -> dict[Path, list[str]]:
    """The package's files that running ``script`` can import or run as a process of its own, each
    with the chain that leads to it."""
    chains: dict[Path, list[str]] = {}
    pending: list[tuple[Path, str | None, list[str]]] = [(script, None, [])]
    while pending:
        path, module, chain = pending.pop()
        for name in sorted(imported_modules(path, module, processes=True)):
            if name.split(".")[0] != PACKAGE:
                continue
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__.py and a/b/__init__.py
                dotted = ".".join(parts[:depth])
                found = module_file(dotted, source_root)
                if found is not None and found not in chains:
                    chains[found] = [*chain, dotted]
                    pending.append((found, dotted, chains[found]))
    return chains

"""Recipes: named sets of params (``recipes/<name>.yaml``), so that a user selects a tested training
setup by name instead of typing fifteen ``-S`` flags.

A recipe is a flat mapping of dotted params keys to values, with a ``description``. Selecting it
writes those values into ``params.yaml`` (``imgclf recipe photos --apply``, comments kept) or
passes them to DVC (``imgclf recipe photos --flags | xargs dvc exp run``). Either way params.yaml, or
the experiment's copy of it, holds every value the run used: ``dvc exp show`` shows them, ``dvc
params diff`` compares them, and only the stages whose params a recipe changes rerun.

Why recipes and not DVC's Hydra composition: docs/data.md, "Training on your own images", says.
"""

from __future__ import annotations

import copy
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from imgclf.plumbing.files import atomic_file
from imgclf.plumbing.params import PARAMS_FILE, ParamsError, parse_section, read_params_file
from imgclf.sections import SECTIONS

# the project's own recipes/ (run from its root, as every stage is), else those of this checkout
PROJECT_RECIPES = Path("recipes")
SHIPPED_RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def recipes_folder() -> Path:
    return PROJECT_RECIPES if PROJECT_RECIPES.is_dir() else SHIPPED_RECIPES


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    settings: dict[str, Any]  # dotted params key -> value, in the file's order

    def flags(self) -> list[str]:
        """``-S key=value`` for each setting, each quoted for a POSIX shell."""
        return [part for key, value in self.settings.items()
                for part in ("-S", shlex.quote(f"{key}={flag_value(value)}"))]


def flag_value(value: Any) -> str:
    """A value as DVC's ``-S`` parses it (YAML): plain words stay bare, the rest in JSON (a YAML subset)."""
    if isinstance(value, str) and value.replace("_", "").isalnum() and value not in ("null", "true", "false"):
        return value
    return json.dumps(value)


def available(folder: Path | None = None) -> list[str]:
    return sorted(path.stem for path in (folder or recipes_folder()).glob("*.yaml"))


def load_recipe(name: str, folder: Path | None = None) -> Recipe:
    """The recipe ``name``, its keys and values checked against the params (against ``params.yaml``'s
    other values, so that a combination the params refuse is refused here, naming the key)."""
    folder = folder or recipes_folder()
    path = folder / f"{name}.yaml"
    if not path.is_file():
        raise ParamsError(f"no recipe {name!r}; the recipes are {', '.join(available(folder)) or 'none'} "
                          f"(files in {folder})")
    document = YAML(typ="safe").load(path.read_text(encoding="utf-8")) or {}
    description = str(document.pop("description", ""))
    recipe = Recipe(name, description, dict(document))
    check(recipe, read_params_file(PARAMS_FILE) if PARAMS_FILE.is_file() else {})
    return recipe


def applied(settings: dict[str, Any], params: dict[str, Any], origin: str) -> dict[str, Any]:
    """A copy of the params mapping ``params`` with the dotted ``settings`` (of ``origin``) set."""
    result = copy.deepcopy(params)
    for key, value in settings.items():
        *parents, leaf = key.split(".")
        section = result
        for parent in parents:
            section = section.setdefault(parent, {})
            if not isinstance(section, dict):
                raise ParamsError(f"{origin}: {key} goes inside {parent}, which is not a mapping")
        section[leaf] = value
    return result


def check(recipe: Recipe, params: dict[str, Any]) -> None:
    """Raise :class:`ParamsError`, naming the recipe and the key, where its values are not valid params."""
    check_settings(recipe.settings, params, f"recipe {recipe.name}")


def check_settings(settings: dict[str, Any], params: dict[str, Any], origin: str) -> None:
    """Raise :class:`ParamsError`, naming ``origin`` (a recipe, a search space) and the key, where the
    dotted ``settings`` are not valid params when set into the params mapping ``params``."""
    merged = applied(settings, params, origin)
    for key in settings:
        section = key.split(".")[0]
        if section not in SECTIONS:
            raise ParamsError(f"{origin}: {key} is in no section of params.yaml; the sections are "
                              f"{', '.join(SECTIONS)}")
    for section in {key.split(".")[0] for key in settings}:
        try:
            parse_section(SECTIONS[section], merged.get(section) or {}, section)
        except ParamsError as error:
            raise ParamsError(f"{origin}: {error}") from None


def apply_to_file(recipe: Recipe, path: Path = PARAMS_FILE) -> list[str]:
    """Write the recipe's values into the params file at ``path``, its comments and order kept; return
    the keys whose values changed."""
    yaml = YAML()  # round-trip: comments, order and quoting stay
    yaml.preserve_quotes = True
    yaml.representer.add_representer(type(None), lambda representer, _: representer.represent_scalar(
        "tag:yaml.org,2002:null", "null"))  # null stays null, not an empty value
    document = yaml.load(path.read_text(encoding="utf-8"))
    changed = []
    for key, value in recipe.settings.items():
        *parents, leaf = key.split(".")
        section = document
        for parent in parents:
            section = section.setdefault(parent, CommentedMap())
        if section.get(leaf) != value:
            changed.append(key)
        if isinstance(value, list):  # [64, 64] as params.yaml writes sizes, not a block list
            value = CommentedSeq(value)
            value.fa.set_flow_style()
        section[leaf] = value
    with atomic_file(path) as handle:  # a failure leaves params.yaml as it was
        yaml.dump(document, handle)
    return changed

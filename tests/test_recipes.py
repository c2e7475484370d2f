"""Recipes: named sets of params, selected through the real `imgclf recipe` command."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from imgclf.plumbing.params import ParamsError
from imgclf.recipes import available, load_recipe
from tests.helpers import PROJECT_ROOT, run

RECIPES = available(PROJECT_ROOT / "recipes")


def flat(mapping: dict, prefix: str = "") -> dict[str, object]:
    """{"train.augment.zoom": 0.1, ...}: every leaf of a params mapping by its dotted key."""
    leaves: dict[str, object] = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            leaves.update(flat(value, f"{prefix}{key}."))
        else:
            leaves[f"{prefix}{key}"] = value
    return leaves


@pytest.fixture
def project(tmp_path) -> Path:
    shutil.copy2(PROJECT_ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(PROJECT_ROOT / "recipes", tmp_path / "recipes")
    return tmp_path


def test_the_shipped_recipes_are_the_documented_ones():
    assert RECIPES == ["airbench", "airbench95", "cifar10", "photos", "photos_long", "tutorial"]
    assert all(load_recipe(name, PROJECT_ROOT / "recipes").description for name in RECIPES)


@pytest.mark.parametrize("name", RECIPES)
def test_a_recipe_selected_by_name_sets_exactly_its_params(project, name):
    before_text = (project / "params.yaml").read_text()
    before = flat(YAML(typ="safe").load(before_text))
    result = run(["imgclf", "recipe", name, "--apply"], project)
    after_text = (project / "params.yaml").read_text()
    after = flat(YAML(typ="safe").load(after_text))
    recipe = load_recipe(name, project / "recipes")
    assert {key: after[key] for key in recipe.settings} == recipe.settings
    assert {key: value for key, value in after.items() if key not in recipe.settings} == \
        {key: value for key, value in before.items() if key not in recipe.settings}
    # the file is edited, not rewritten: every comment and every line outside the recipe's keys stays
    changed_lines = [line for line in after_text.splitlines() if line not in before_text.splitlines()]
    assert len(after_text.splitlines()) == len(before_text.splitlines())
    assert len(changed_lines) <= len(recipe.settings)
    assert after_text.count("#") == before_text.count("#") and "null" in after_text
    assert f"recipe {name} set" in result.stdout


def test_every_recipe_sets_the_same_keys_so_that_switching_leaves_nothing_behind(project):
    keys = {name: set(load_recipe(name, project / "recipes").settings) for name in RECIPES}
    assert all(found == keys["photos"] for found in keys.values()), keys
    run(["imgclf", "recipe", "tutorial", "--apply"], project)
    run(["imgclf", "recipe", "photos", "--apply"], project)
    photos_after_tutorial = (project / "params.yaml").read_text()
    shutil.copy2(PROJECT_ROOT / "params.yaml", project / "params.yaml")
    run(["imgclf", "recipe", "photos", "--apply"], project)
    assert (project / "params.yaml").read_text() == photos_after_tutorial


@pytest.mark.parametrize("name", RECIPES)
def test_the_flags_reach_a_command_through_xargs_as_the_recipe(project, name):
    """What the README's `imgclf recipe NAME --flags | xargs dvc exp run ...` hands to DVC: each word
    as bash and xargs really split it (printed one per line by printf), parsed as DVC parses -S."""
    words = run(["bash", "-c", f"imgclf recipe {name} --flags | xargs printf '%s\\n'"], project).stdout.splitlines()
    assert words[::2] == ["-S"] * (len(words) // 2)
    parsed = {}
    for assignment in words[1::2]:  # as DVC parses -S key=value: the value as YAML
        key, value = assignment.split("=", 1)
        parsed[key] = YAML(typ="safe").load(value)
    assert parsed == load_recipe(name, project / "recipes").settings
    line = run(["imgclf", "recipe", name, "--flags"], project).stdout.strip()
    assert f"dvc exp run {line}" in run(["imgclf", "recipe", name], project).stdout


def test_a_recipe_with_a_bad_key_or_value_names_the_recipe_and_the_key(project):
    (project / "recipes" / "typo.yaml").write_text("description: x\ntrain.epoch: 3\n")
    with pytest.raises(ParamsError, match=r"recipe typo: .*unknown key train\.epoch"):
        load_recipe("typo", project / "recipes")
    (project / "recipes" / "bad.yaml").write_text("description: x\ntrain.optimizer: lion\n")
    with pytest.raises(ParamsError, match=r"recipe bad: .*train\.optimizer.*sgd"):
        load_recipe("bad", project / "recipes")


def test_an_unknown_recipe_lists_the_known_ones(project):
    result = run(["imgclf", "recipe", "nope"], project, check=False)
    assert result.returncode == 1
    assert "no recipe 'nope'" in result.stdout and "photos" in result.stdout and "Traceback" not in result.stdout
    listing = run(["imgclf", "recipe"], project).stdout
    assert [line.split(":")[0] for line in listing.splitlines()] == RECIPES


@pytest.mark.slow
@pytest.mark.real_data
@pytest.mark.parametrize("recipe", ["airbench", "airbench95"])
def test_the_airbench_recipes_run_on_real_cifar10_images_with_every_method_on(tmp_path, recipe):
    """`imgclf recipe NAME --apply`, then `dvc exp run` for 3 epochs on a few hundred real CIFAR-10 images."""
    import json

    from imgclf.modeling.augment import AlternatingFlip, RandomTranslate
    from imgclf.modeling.devices import has_bf16_units
    from imgclf.modeling.modelio import load_model
    from imgclf.modeling.networks import WHITENING_LAYER
    from tests.helpers import extract_cifar10_subset, make_project

    images = extract_cifar10_subset(tmp_path / "cifar", train_per_class=40, test_per_class=4)
    project = make_project(tmp_path / "project", heatmaps=False)
    run(["imgclf", "recipe", recipe, "--apply"], project)
    run(["dvc", "exp", "run", "-S", "data.source=folder", "-S", f"data.path={images}", "-S", "train.epochs=3",
         "-S", "train.warmup_epochs=1.0"], project)

    model = load_model(project / "models/model.keras")
    assert not model.get_layer(WHITENING_LAYER).trainable  # whitened from the training patches, then frozen
    augmentation = [type(layer) for layer in model.get_layer("augmentation").layers]
    assert augmentation == [AlternatingFlip, RandomTranslate]
    params = YAML(typ="safe").load((project / "params.yaml").read_text())
    assert params["train"]["model"] == recipe
    assert params["evaluate"]["tta"] == "flip_translate" and params["train"]["identity_init"] is True
    assert params["train"]["lookahead"] is True and params["train"]["norm_shift_lr"] == 64
    assert params["train"]["optimizer"] == ("muon" if recipe == "airbench" else "sgd")
    training = json.loads((project / "metrics/train.json").read_text())
    assert training["epochs"] == 3
    # train.mixed_precision: auto, in bfloat16 where the CPU has the units for it (AVX-512 BF16, AMX)
    assert params["train"]["mixed_precision"] == "auto"
    assert training["precision"] == ("mixed_bfloat16" if has_bf16_units() else "float32")
    assert json.loads((project / "metrics/evaluate.json").read_text())["test_images"] == 40
    # its ONNX copy, in bfloat16 too: the export is the model's float32 copy (tf2onnx has no bfloat16)
    assert (project / "models/model.onnx").is_file()

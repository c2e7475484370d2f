import dataclasses
import re
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from imgclf.modeling.params import AugmentParams, TrainParams
from imgclf.plumbing.params import ParamsError, load_section, parse_section, read_params_file
from imgclf.sections import SECTIONS
from imgclf.serving.params import ExportParams

PROJECT_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("section", SECTIONS)
def test_project_params_are_valid(section):
    load_section(SECTIONS[section], PROJECT_PARAMS)


def test_a_section_is_loaded_as_its_own_type_and_only_a_section_can_be():
    params = load_section(TrainParams, PROJECT_PARAMS)
    assert type(params) is TrainParams  # what the stage's type checker sees too
    with pytest.raises(TypeError, match="AugmentParams is not a section of params.yaml"):
        load_section(AugmentParams, PROJECT_PARAMS)


def test_a_list_param_reads_as_a_tuple(tmp_path):
    params = load_section(ExportParams, write(tmp_path, "export:\n  formats: [onnx, tflite]\n"))
    assert params.formats == ("onnx", "tflite")


def test_values_are_read_as_yaml_1_2_like_dvc(tmp_path):
    path = write(tmp_path, "train:\n  learning_rate: 1e-3\n  epochs: 042\n")
    params = load_section(TrainParams, path)
    assert params.learning_rate == 0.001  # PyYAML (YAML 1.1) would give the string "1e-3"
    assert params.epochs == 42  # not octal 34
    # YAML 1.2 has no `no` boolean: it is the string "no", rejected for a boolean key.
    with pytest.raises(ParamsError, match=r"train\.nesterov = 'no'.*true or false"):
        load_section(TrainParams, write(tmp_path, "train:\n  nesterov: no\n"))


def test_python_object_tags_are_refused(tmp_path):
    path = write(tmp_path, "train:\n  epochs: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ParamsError, match="Python object tag"):
        read_params_file(path)


def test_missing_keys_take_defaults(tmp_path):
    assert load_section(TrainParams, write(tmp_path, "train:\n  epochs: 3\n")) == TrainParams(epochs=3)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("train:\n  epoch: 3\n", r"unknown key train\.epoch; the keys of train are model, backbone, weights"),
        ("train:\n  augment:\n    flip: true\n", r"unknown key train\.augment\.flip"),
        ("train:\n  epochs: three\n", r"train\.epochs = 'three' .*whole number"),
        ("train:\n  epochs: 2.5\n", r"train\.epochs = 2\.5 .*whole number"),
        ("train:\n  epochs: 0\n", r"train\.epochs = 0 .*greater than 0"),
        ("train:\n  batch_size: -8\n", r"train\.batch_size = -8 .*greater than 0"),
        ("train:\n  learning_rate: '0.01'\n", r"train\.learning_rate = '0\.01' .*a number"),
        ("train:\n  optimizer: adamx\n", r"train\.optimizer = 'adamx' .*sgd, muon, adam, adamw, rmsprop, adadelta"),
        ("train:\n  model: resnet\n",
         r"train\.model = 'resnet' .*vgg16, resnet20, resnet56, fast_cnn, airbench, airbench95, transfer"),
        ("train:\n  dropout_rate: 1.5\n", r"train\.dropout_rate = 1\.5"),
        ("train:\n  augment:\n    rotation: 200\n", r"train\.augment\.rotation = 200\.0 .*degrees"),
        ("train:\n  augment:\n    width_shift: 1\n", r"train\.augment\.width_shift = 1\.0 .*fraction"),
        ("train:\n  augment:\n    fill_mode: mirror\n", r"fill_mode = 'mirror' .*nearest, reflect, wrap, constant"),
        ("train:\n  augment:\n    brightness: [1.2, 0.8]\n", r"brightness = \[1\.2, 0\.8\] .*low <= high"),
        ("train:\n  backbone: vgg99\n", r"train\.backbone = 'vgg99' .*vgg16, vgg19, resnet50, mobilenet_v2"),
        ("train:\n  schedule: linear\n", r"train\.schedule = 'linear' .*constant, step, cosine, one_cycle"),
        ("train:\n  jit_compile: sometimes\n", r"train\.jit_compile = 'sometimes' .*true or false or auto"),
        ("train:\n  mixed_precision: half\n", r"mixed_precision = 'half' .*off, float16, bfloat16, auto"),
        ("train:\n  distribution: ring\n", r"distribution = 'ring' .*auto, none, mirrored, multi_worker"),
        ("train:\n  class_weight: inverse\n", r"class_weight = 'inverse' .*choose one of balanced"),
        ("train:\n  label_smoothing: 1\n", r"train\.label_smoothing = 1\.0"),
        ("train:\n  warmup_epochs: 40\n", r"train\.warmup_epochs = 40\.0 .*train\.epochs \(30\)"),
        ("train:\n  schedule: cosine\n  reduce_lr_patience: 3\n", r"reduce_lr_patience = 3 .*schedule constant"),
        ("train:\n  fine_tune:\n    epochs: 3\n", r"train\.fine_tune\.epochs = 3 .*unless train\.model is transfer"),
        ("train:\n  model: transfer\n  featurewise_center: true\n", r"featurewise_center = True .*train\.rescale"),
        ("split:\n  val: 0\n", r"split\.val = 0\.0 .*strictly between 0 and 1"),
        ("split:\n  test: 1.2\n", r"split\.test = 1\.2 .*strictly between 0 and 1"),
        ("split:\n  val: 0.5\n  test: 0.5\n", r"split\.val \+ split\.test = 1\.0 .*below 1"),
        ("split:\n  seed: true\n", r"split\.seed = True .*whole number"),
        ("resize:\n  size: [0, 32]\n", r"resize\.size = \[0, 32\] .*greater than 0"),
        ("resize:\n  size: 32\n", r"resize\.size = 32 .*list of 2"),
        ("resize:\n  mode: squash\n", r"resize\.mode = 'squash' .*stretch, pad, crop"),
        ("data:\n  source: imagenet\n", r"data\.source = 'imagenet' .*digits, folder"),
        ("data:\n  source: folder\n", r"data\.path = None .*needs data\.path"),
        ("train: [1, 2]\n", r"train = \[1, 2\] .*mapping"),
        ("evaluate:\n  top_k: 0\n", r"evaluate\.top_k = 0 .*greater than 0"),
        ("export:\n  formats: onnx\n", r"export\.formats = 'onnx' .*give a list"),
        ("export:\n  formats: [coreml]\n", r"export\.formats = 'coreml' .*saved_model, onnx, tflite"),
        ("export:\n  formats: [onnx, onnx]\n", r"export\.formats = \['onnx', 'onnx'\] .*each format once"),
    ],
)
def test_bad_values_name_the_key_the_value_and_what_is_allowed(tmp_path, text, message):
    section = text.split(":")[0]
    with pytest.raises(ParamsError, match=message):
        load_section(SECTIONS[section], write(tmp_path, text))


def test_params_are_frozen():
    params = parse_section(TrainParams, {"epochs": 3}, "train")
    with pytest.raises(AttributeError):
        params.epochs = 4  # type: ignore[misc]  # the point: frozen


def test_missing_params_file_says_where_to_run(tmp_path):
    with pytest.raises(ParamsError, match="project's root folder"):
        load_section(TrainParams, tmp_path / "params.yaml")


# --- every param documented once, with its default, in params.yaml and in docs/parameters.md -------

PARAMETERS_PAGE = PROJECT_PARAMS.parent / "docs" / "parameters.md"


def _plain(value):
    """A default as YAML gives it back: tuples are lists."""
    return [_plain(item) for item in value] if isinstance(value, (tuple, list)) else value


def dataclass_defaults(cls: type, prefix: str) -> dict[str, object]:
    """Every leaf field of a params dataclass as ``dotted.key: default`` (nested sections flattened)."""
    defaults: dict[str, object] = {}
    instance = cls()
    for item in dataclasses.fields(instance):
        value = getattr(instance, item.name)
        if dataclasses.is_dataclass(value):
            defaults.update(dataclass_defaults(type(value), f"{prefix}.{item.name}"))
        else:
            defaults[f"{prefix}.{item.name}"] = _plain(value)
    return defaults


def code_defaults() -> dict[str, object]:
    return {key: value for section, cls in SECTIONS.items() for key, value in dataclass_defaults(cls, section).items()}


def yaml_leaves(values: dict, prefix: str = "") -> dict[str, object]:
    leaves: dict[str, object] = {}
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            leaves.update(yaml_leaves(value, dotted + "."))
        else:
            leaves[dotted] = value
    return leaves


def documented_parameters(text: str) -> dict[str, str]:
    """The keys of docs/parameters.md's table with their defaults as written (YAML text).

    A row may document several keys: ``a.b.c`` / ``d`` (or ``, ``): later names take the first one's
    prefix, and the default cell lists one value per key in the same order.
    """
    documented: dict[str, str] = {}
    for line in text.splitlines():
        if not line.startswith("| `"):
            continue
        key_cell, default_cell = (cell.strip() for cell in line.strip("|").split("|")[:2])
        names = re.findall(r"`([^`]+)`", key_cell)
        defaults = re.findall(r"`([^`]*)`", default_cell)
        assert len(names) == len(defaults), f"row {key_cell}: {len(names)} keys, {len(defaults)} defaults"
        prefix = names[0].rsplit(".", 1)[0]
        for name, default in zip(names, defaults, strict=True):
            documented[name if "." in name else f"{prefix}.{name}"] = default
    return documented


def test_params_yaml_holds_every_param_with_its_default_and_nothing_else():
    expected = code_defaults()
    written = yaml_leaves(read_params_file(PROJECT_PARAMS))
    assert sorted(set(expected) - set(written)) == [], "params.yaml lacks these params"
    assert sorted(set(written) - set(expected)) == [], "params.yaml has keys the code does not know"
    wrong = {key: (written[key], default) for key, default in expected.items() if written[key] != default}
    assert wrong == {}, "params.yaml value != the dataclass default (written, default)"


def test_the_parameters_page_documents_every_param_with_its_default_and_nothing_else():
    expected = code_defaults()
    documented = documented_parameters(PARAMETERS_PAGE.read_text(encoding="utf-8"))
    assert sorted(set(expected) - set(documented)) == [], "docs/parameters.md lacks these params"
    assert sorted(set(documented) - set(expected)) == [], "docs/parameters.md has keys the code does not know"
    yaml = YAML(typ="safe")
    wrong = {key: (documented[key], default) for key, default in expected.items()
             if yaml.load(documented[key]) != default}
    assert wrong == {}, "docs/parameters.md default != the dataclass default (documented, default)"


def test_the_guards_name_a_param_left_out_or_unknown():
    text = PARAMETERS_PAGE.read_text(encoding="utf-8")
    broken = text.replace("| `split.seed` | `42` | seed of the stratified split |\n", "").replace(
        "| `evaluate.tta` |", "| `evaluate.test_time_augmentation` |")
    documented = documented_parameters(broken)
    assert "split.seed" not in documented and "evaluate.test_time_augmentation" in documented
    assert sorted(set(code_defaults()) ^ set(documented)) == [
        "evaluate.test_time_augmentation", "evaluate.tta", "split.seed"]

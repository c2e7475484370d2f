"""Typed, validated parameters: one frozen dataclass per section of ``params.yaml``.

``params.yaml`` is parsed the way DVC parses it (ruamel.yaml, YAML 1.2, safe loader), so that
``learning_rate: 1e-3`` is the float 0.001 for our code exactly as it is for ``dvc params diff``.
PyYAML follows YAML 1.1 and would read it as the string "1e-3", ``042`` as octal 34 and ``no`` as
False.

Every section is checked once, when a stage starts: an unknown key, a value of the wrong type or
an impossible value raises :class:`ParamsError` naming the key, the value given and what is
allowed, before the stage writes anything.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from ruamel.yaml import YAML
from ruamel.yaml.constructor import ConstructorError
from ruamel.yaml.error import YAMLError

from imgclf.errors import PipelineError

PARAMS_FILE = Path("params.yaml")

SourceName = Literal["digits", "folder", "csv", "cifar10", "cifar100", "kaggle"]
ResizeMode = Literal["stretch", "pad", "crop"]
ModelName = Literal["simple_cnn", "small_convnet", "cifar_cnn", "vgg16", "resnet20", "resnet56", "fast_cnn",
                    "transfer"]
BackboneName = Literal["vgg16", "vgg19", "resnet50", "mobilenet_v2", "efficientnet_b0", "inception_v3"]
OptimizerName = Literal["sgd", "adam", "adamw", "rmsprop", "adadelta"]
ScheduleName = Literal["constant", "step", "cosine", "one_cycle"]
FillMode = Literal["nearest", "reflect", "wrap", "constant"]
PrecisionName = Literal["off", "float16", "bfloat16", "auto"]
DistributionName = Literal["auto", "none", "mirrored", "multi_worker"]
ExportFormat = Literal["saved_model", "onnx", "tflite"]


class ParamsError(PipelineError):
    """A parameter in params.yaml is missing, unknown, of the wrong type or out of range."""


@dataclass(frozen=True)
class Section:
    """Base of every params section (a frozen dataclass): ``validate`` checks values that the types alone cannot."""

    def validate(self, section: str) -> None:
        """Raise :class:`ParamsError` for an impossible value; ``section`` is the key's dotted prefix."""


def _fail(key: str, value: Any, allowed: str) -> typing.NoReturn:
    raise ParamsError(f"params.yaml: {key} = {value!r} is not allowed: {allowed}.")


def _require_fraction(key: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        _fail(key, value, "use a fraction strictly between 0 and 1")


def _require_positive(key: str, value: float) -> None:
    if value <= 0:
        _fail(key, value, "use a number greater than 0")


def _require_non_negative(key: str, value: float) -> None:
    if value < 0:
        _fail(key, value, "use a number of 0 or more (0 turns it off)")


@dataclass(frozen=True)
class KaggleParams(Section):
    """Which Kaggle competition or dataset to download (``data.kaggle``); set one of the two."""

    competition: str | None = None  # e.g. dogs-vs-cats
    dataset: str | None = None  # owner/name, e.g. tongpython/cat-and-dog


@dataclass(frozen=True)
class CsvParams(Section):
    """Columns of the labels CSV of ``source: csv`` (``data.csv``)."""

    file_column: str = "id"
    label_column: str = "label"
    # Added to file names that have no extension, as in Kaggle label files ("a3f9" -> "a3f9.tif").
    extension: str | None = None


@dataclass(frozen=True)
class DataParams(Section):
    """Where the download stage gets its images (``data`` in params.yaml)."""

    source: SourceName = "digits"
    # folder and csv: the folder of images. Relative paths are relative to the repository.
    path: str | None = None
    # cifar10, cifar100: a mirror URL or file:// path of the official binary archive.
    url: str | None = None
    # The archive's expected checksum as "md5:<hex>" or "sha256:<hex>"; null: the official one.
    checksum: str | None = None
    # Where downloaded archives are kept and reused; null: ~/.keras/datasets.
    cache_dir: str | None = None
    # kaggle: an archive already on disk (no API, no credentials needed).
    archive: str | None = None
    label_mode: Literal["fine", "coarse"] = "fine"  # cifar100's 100 fine or 20 coarse classes
    # kaggle: a regular expression whose first group is the label in a file name (cat.123.jpg).
    label_pattern: str = r"^([A-Za-z]+)[._-]\d+\."
    labels_csv: str | None = None  # csv: the CSV of file names and labels
    timeout: float = 60.0  # seconds without a byte before a download attempt is abandoned
    retries: int = 3  # further attempts after a failed download; each resumes the partial file
    max_unpacked_gb: float = 20.0  # archives that unpack to more are refused (archive bombs)
    kaggle: KaggleParams = field(default_factory=KaggleParams)
    csv: CsvParams = field(default_factory=CsvParams)

    def validate(self, section: str) -> None:
        if self.source == "folder" and not self.path:
            _fail(f"{section}.path", self.path,
                  "data.source 'folder' needs data.path, the folder that holds one subfolder per class")
        if self.source == "csv" and not (self.path and self.labels_csv):
            _fail(f"{section}.path / {section}.labels_csv", (self.path, self.labels_csv),
                  "data.source 'csv' needs data.path (the images) and data.labels_csv (file,label rows)")
        if self.source == "kaggle":
            choices = {"archive": self.archive, "kaggle.competition": self.kaggle.competition,
                       "kaggle.dataset": self.kaggle.dataset}
            given = [name for name, value in choices.items() if value]
            if len(given) != 1:
                _fail(f"{section}.archive / {section}.kaggle", given or None,
                      "data.source 'kaggle' needs exactly one of data.archive, data.kaggle.competition, "
                      "data.kaggle.dataset")
        if self.kaggle.dataset is not None and self.kaggle.dataset.count("/") != 1:
            _fail(f"{section}.kaggle.dataset", self.kaggle.dataset, "write it as owner/name")
        if self.checksum is not None:
            algorithm, _, digest = self.checksum.partition(":")
            lengths = {"md5": 32, "sha256": 64}
            if algorithm not in lengths or len(digest) != lengths[algorithm] or not _is_hex(digest):
                _fail(f"{section}.checksum", self.checksum, "write md5:<32 hex digits> or sha256:<64 hex digits>")
        try:
            if re.compile(self.label_pattern).groups < 1:
                _fail(f"{section}.label_pattern", self.label_pattern,
                      "put the label in a group, e.g. ^([A-Za-z]+)\\.\\d+")
        except re.error as error:
            _fail(f"{section}.label_pattern", self.label_pattern, f"not a regular expression ({error})")
        _require_positive(f"{section}.timeout", self.timeout)
        _require_non_negative(f"{section}.retries", self.retries)
        _require_positive(f"{section}.max_unpacked_gb", self.max_unpacked_gb)


def _is_hex(text: str) -> bool:
    return all(character in "0123456789abcdefABCDEF" for character in text)


@dataclass(frozen=True)
class SplitParams(Section):
    """Stratified train/validation/test split (``split``)."""

    seed: int = 42
    # Fractions of all images; a source's own test split is kept and then `test` is unused.
    val: float = 0.15
    test: float = 0.15
    # Drop files whose bytes repeat another file's, so no image sits in two splits (test leakage).
    deduplicate: bool = True
    # Also the same picture re-encoded or resized: perceptual hashes (256 bits) at most this many bits
    # apart (src/imgclf/near_duplicates.py); null: byte-identical copies only.
    near_duplicate_bits: int | None = 8

    def validate(self, section: str) -> None:
        _require_fraction(f"{section}.val", self.val)
        _require_fraction(f"{section}.test", self.test)
        if self.near_duplicate_bits is not None and not 0 <= self.near_duplicate_bits <= 64:
            _fail(f"{section}.near_duplicate_bits", self.near_duplicate_bits,
                  "allowed: 0 to 64 bits of the 256 (unrelated pictures differ in about 128), or null for "
                  "byte-identical copies only")
        if self.val + self.test >= 1.0:
            _fail(f"{section}.val + {section}.test", self.val + self.test,
                  "the two fractions must leave images for training: keep their sum below 1")


@dataclass(frozen=True)
class ResizeParams(Section):
    """How images are brought to the training size (``resize``)."""

    size: tuple[int, int] = (32, 32)  # height, width
    mode: ResizeMode = "stretch"
    # Images whose header claims more pixels are refused before decoding (decompression bombs).
    max_megapixels: float = 200.0
    # Each split is written in shards of about this many MB of pixels; the resize stage holds one
    # shard in memory, and DVC tracks a file per shard (src/imgclf/dataset.py).
    shard_mb: float = 256.0

    def validate(self, section: str) -> None:
        _require_positive(f"{section}.max_megapixels", self.max_megapixels)
        _require_positive(f"{section}.shard_mb", self.shard_mb)
        if len(self.size) != 2 or min(self.size) <= 0:
            _fail(f"{section}.size", list(self.size),
                  "give [height, width] as two whole numbers greater than 0, e.g. [32, 32]")


@dataclass(frozen=True)
class AugmentParams(Section):
    """Random augmentation inside the model, active only while training (``train.augment``).

    The settings of Keras' old ``ImageDataGenerator``, in its units (README: "Augmentation"):
    angles in degrees, shifts and zoom as fractions of the image size, ``brightness`` the range
    of the factor pixels are multiplied by. 0, false and null are off.
    """

    horizontal_flip: bool = False
    vertical_flip: bool = False
    rotation: float = 0.0  # degrees, drawn from [-rotation, rotation]
    width_shift: float = 0.0  # fraction of the width
    height_shift: float = 0.0  # fraction of the height
    shear: float = 0.0  # degrees
    zoom: float = 0.0  # scale drawn from [1 - zoom, 1 + zoom]
    fill_mode: FillMode = "nearest"  # how pixels from outside the image are filled
    cval: float = 0.0  # the fill value of fill_mode "constant", in pixel values 0-255
    brightness: tuple[float, float] | None = None  # e.g. [0.8, 1.2]
    contrast: float = 0.0  # fraction of the contrast

    def validate(self, section: str) -> None:
        if not 0.0 <= self.rotation <= 180.0:
            _fail(f"{section}.rotation", self.rotation, "use degrees from 0 (off) to 180")
        if not 0.0 <= self.shear < 90.0:
            _fail(f"{section}.shear", self.shear, "use degrees from 0 (off) up to, not including, 90")
        for name in ("width_shift", "height_shift", "zoom", "contrast"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                _fail(f"{section}.{name}", value, "use a fraction from 0 (off) up to, not including, 1")
        if self.brightness is not None and not 0.0 <= self.brightness[0] <= self.brightness[1]:
            _fail(f"{section}.brightness", list(self.brightness),
                  "give [low, high] factors with 0 <= low <= high, e.g. [0.8, 1.2], or null for off")

    @property
    def geometric(self) -> bool:
        """Whether any setting moves pixels (these share one resampling)."""
        return (self.horizontal_flip or self.vertical_flip or self.rotation > 0 or self.width_shift > 0
                or self.height_shift > 0 or self.shear > 0 or self.zoom > 0)


@dataclass(frozen=True)
class FineTuneParams(Section):
    """A second phase for ``transfer`` models (``train.fine_tune``): the top of the backbone trains too."""

    epochs: int = 0  # 0: no fine-tuning phase
    layers: int | None = None  # backbone layers unfrozen from the top; null: all of them
    learning_rate: float = 1e-5

    def validate(self, section: str) -> None:
        _require_non_negative(f"{section}.epochs", self.epochs)
        if self.layers is not None:
            _require_positive(f"{section}.layers", self.layers)
        _require_positive(f"{section}.learning_rate", self.learning_rate)


@dataclass(frozen=True)
class TrainParams(Section):
    """Model, optimiser, schedule and devices of the train stage (``train``)."""

    model: ModelName = "simple_cnn"
    backbone: BackboneName = "mobilenet_v2"  # transfer only
    weights: str | None = "imagenet"  # transfer only: imagenet | none | path to a weights file
    freeze_base: bool = True  # transfer only: train the new head alone first
    fine_tune: FineTuneParams = field(default_factory=FineTuneParams)
    epochs: int = 30
    batch_size: int = 32
    optimizer: OptimizerName = "adam"
    learning_rate: float = 0.001
    momentum: float = 0.9  # sgd only
    nesterov: bool = True  # sgd only
    weight_decay: float = 0.0  # decoupled weight decay, every optimizer
    label_smoothing: float = 0.0
    schedule: ScheduleName = "constant"
    warmup_epochs: float = 0.0  # cosine and one_cycle: linear warm-up from 0 (one_cycle: from lr/25)
    step_epochs: int = 10  # step: multiply the rate by step_factor every step_epochs
    step_factor: float = 0.1
    class_weight: Literal["balanced"] | None = None
    early_stopping_patience: int | None = None  # epochs without a better val_loss before stopping
    reduce_lr_patience: int | None = None  # epochs without a better val_loss before the rate is cut
    reduce_lr_factor: float = 0.1
    # None keeps the architecture's published rate (see models.DEFAULT_DROPOUT_RATES).
    dropout_rate: float | None = None
    rescale: float | None = None  # null: the network's own (1/255; a backbone's own preprocessing)
    featurewise_center: bool = False  # subtract the training split's mean per channel
    featurewise_std_normalization: bool = False  # and divide by its standard deviation
    mixed_precision: PrecisionName = "off"
    jit_compile: bool | Literal["auto"] = "auto"
    distribution: DistributionName = "auto"
    resume: bool = False  # continue an interrupted run from its last epoch
    tensorboard: bool = True  # event files in logs/tensorboard/
    seed: int = 42
    augment: AugmentParams = field(default_factory=AugmentParams)

    def validate(self, section: str) -> None:
        _require_positive(f"{section}.epochs", self.epochs)
        _require_positive(f"{section}.batch_size", self.batch_size)
        _require_positive(f"{section}.learning_rate", self.learning_rate)
        _require_non_negative(f"{section}.weight_decay", self.weight_decay)
        if not 0.0 <= self.momentum < 1.0:
            _fail(f"{section}.momentum", self.momentum, "use a value from 0 up to, not including, 1")
        if not 0.0 <= self.label_smoothing < 1.0:
            _fail(f"{section}.label_smoothing", self.label_smoothing,
                  "use a value from 0 (off) up to, not including, 1")
        if self.dropout_rate is not None and not 0.0 <= self.dropout_rate < 1.0:
            _fail(f"{section}.dropout_rate", self.dropout_rate,
                  "use a rate from 0 up to, not including, 1, or null for the architecture's own")
        if not 0.0 <= self.warmup_epochs < self.epochs:
            _fail(f"{section}.warmup_epochs", self.warmup_epochs, f"use 0 up to, not including, train.epochs "
                  f"({self.epochs})")
        _require_positive(f"{section}.step_epochs", self.step_epochs)
        for key in ("step_factor", "reduce_lr_factor"):
            value = getattr(self, key)
            if not 0.0 < value < 1.0:
                _fail(f"{section}.{key}", value, "use a factor between 0 and 1, e.g. 0.1")
        for key in ("early_stopping_patience", "reduce_lr_patience"):
            if getattr(self, key) is not None:
                _require_positive(f"{section}.{key}", getattr(self, key))
        if self.reduce_lr_patience is not None and self.schedule != "constant":
            _fail(f"{section}.reduce_lr_patience", self.reduce_lr_patience,
                  f"null with train.schedule {self.schedule!r}: a schedule sets the rate itself; "
                  "use schedule constant to cut the rate on plateaus")
        if self.rescale is not None:
            _require_positive(f"{section}.rescale", self.rescale)
        if (self.featurewise_center or self.featurewise_std_normalization) and self.model == "transfer" \
                and self.rescale is None:
            _fail(f"{section}.featurewise_center", self.featurewise_center,
                  "false with train.model transfer unless train.rescale is set: a backbone brings its own "
                  "input normalisation")
        if self.fine_tune.epochs and self.model != "transfer":
            _fail(f"{section}.fine_tune.epochs", self.fine_tune.epochs,
                  "0 unless train.model is transfer (fine-tuning unfreezes a pretrained backbone)")
        if self.fine_tune.epochs and not self.freeze_base:
            _fail(f"{section}.fine_tune.epochs", self.fine_tune.epochs,
                  "0 when train.freeze_base is false: the whole backbone trains from the first epoch")

    @property
    def pretrained_weights(self) -> str | None:
        """``imagenet``, a file path, or None for random initialisation (``weights: none`` or null)."""
        return None if self.weights in (None, "none") else self.weights

    @property
    def total_epochs(self) -> int:
        return self.epochs + self.fine_tune.epochs


@dataclass(frozen=True)
class EvaluateParams(Section):
    """The evaluate stage (``evaluate``)."""

    batch_size: int = 128
    top_k: int = 5  # top_<k>_accuracy, reported when there are more than k classes
    calibration_bins: int = 15  # equal-width confidence bins of the expected calibration error
    mistakes: int = 24  # images in the gallery of the most confident mistakes
    samples_per_class: int = 8  # test images per class in the samples grid
    label_issues: int = 24  # probably mislabelled images in their gallery (metrics/label_issues.csv lists all)
    tta: Literal["none", "flip"] = "none"  # test-time augmentation: flip averages each image with its mirror

    def validate(self, section: str) -> None:
        for key in ("batch_size", "top_k", "calibration_bins", "mistakes", "samples_per_class", "label_issues"):
            _require_positive(f"{section}.{key}", getattr(self, key))


@dataclass(frozen=True)
class ExportParams(Section):
    """The optional export stage (``export``): which serving formats to write and check."""

    formats: tuple[ExportFormat, ...] = ()  # any of saved_model, onnx, tflite; empty: export nothing

    def validate(self, section: str) -> None:
        if len(set(self.formats)) != len(self.formats):
            _fail(f"{section}.formats", list(self.formats), "name each format once")


SECTIONS: dict[str, type[Section]] = {
    "data": DataParams,
    "split": SplitParams,
    "resize": ResizeParams,
    "train": TrainParams,
    "evaluate": EvaluateParams,
    "export": ExportParams,
}

SectionType = TypeVar("SectionType", bound=Section)


def read_params_file(path: Path = PARAMS_FILE) -> dict[str, Any]:
    """Parse params.yaml exactly as DVC does (YAML 1.2; no Python object tags)."""
    try:
        document = YAML(typ="safe").load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(f"{path} not found: run the stage from the project's root folder.") from None
    except ConstructorError as error:
        raise ParamsError(f"{path} refused: it holds a tag that YAML's safe loader will not build ({error.problem}), "
                          "such as a Python object tag (!!python/...), which could run code. Params must be plain "
                          "values.") from None
    except YAMLError as error:
        raise ParamsError(f"{path} is not valid YAML: {error}") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ParamsError(f"{path} must hold a mapping of sections, got {type(document).__name__}.")
    return document


def load_section(cls: type[SectionType], path: Path = PARAMS_FILE) -> SectionType:
    """Read the section of params.yaml that ``cls`` describes (``load_section(TrainParams)``: ``train``)
    into that typed, validated dataclass."""
    names = [name for name, known in SECTIONS.items() if known is cls]
    if not names:
        raise TypeError(f"{cls.__name__} is not a section of params.yaml; the sections are "
                        f"{', '.join(known.__name__ for known in SECTIONS.values())}")
    document = read_params_file(path)
    return parse_section(cls, document.get(names[0]) or {}, names[0])


def parse_section(cls: type[SectionType], values: Any, section: str) -> SectionType:
    """Build a dataclass from a mapping, checking keys, types and ranges. Missing keys get defaults."""
    if not isinstance(values, dict):
        _fail(section, values, f"expected a mapping with the keys {_field_names(cls)}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ParamsError(
            f"params.yaml: unknown key {section}.{unknown[0]}; "
            f"the keys of {section} are {_field_names(cls)}."
        )
    hints = typing.get_type_hints(cls)
    kwargs = {
        name: _coerce(hints[name], values[name], f"{section}.{name}")
        for name in known
        if name in values
    }
    instance = cls(**kwargs)
    instance.validate(section)
    return instance


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) is Literal:
        return " or ".join(map(str, typing.get_args(hint)))
    return {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}.get(hint, str(hint))


def _field_names(cls: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))


def _coerce(hint: Any, value: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``hint``; return it in the dataclass's type."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if isinstance(hint, type) and issubclass(hint, Section):
        return parse_section(hint, value, key)
    if origin is Literal:
        if value not in args:
            _fail(key, value, "choose one of " + ", ".join(map(str, args)))
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        alternatives = [arg for arg in args if arg is not type(None)]
        if len(alternatives) == 1:
            return _coerce(alternatives[0], value, key)
        for alternative in alternatives:  # e.g. bool | Literal["auto"]: the first that fits
            try:
                return _coerce(alternative, value, key)
            except ParamsError:
                continue
        _fail(key, value, " or ".join(_describe(arg) for arg in alternatives)
              + (" or null" if type(None) in args else ""))
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:  # tuple[X, ...]: a list of any length
        if not isinstance(value, (list, tuple)):
            _fail(key, value, "give a list, e.g. [] or [onnx]")
        return tuple(_coerce(args[0], item, key) for item in value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            _fail(key, value, f"give a list of {len(args)} values")
        return tuple(_coerce(arg, item, key) for arg, item in zip(args, value, strict=True))
    if hint is bool:
        if not isinstance(value, bool):
            _fail(key, value, "use true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(key, value, "use a whole number")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(key, value, "use a number (1e-3 and 0.001 both work)")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            _fail(key, value, "use a string")
        return value
    raise TypeError(f"no coercion for the annotation {hint!r} of {key}")  # a bug in this module

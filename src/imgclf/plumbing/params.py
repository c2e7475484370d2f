"""How ``params.yaml`` is read and checked: each section becomes one typed, frozen dataclass.

``params.yaml`` is parsed the way DVC parses it (ruamel.yaml, YAML 1.2, safe loader), so that
``learning_rate: 1e-3`` is the float 0.001 for our code exactly as it is for ``dvc params diff``.
PyYAML follows YAML 1.1 and would read it as the string "1e-3", ``042`` as octal 34 and ``no`` as
False.

Every section is checked once, when a stage starts: an unknown key, a value of the wrong type or
an impossible value raises :class:`ParamsError` naming the key, the value given and what is
allowed, before the stage writes anything.

The sections themselves live with the code that reads them, each package's ``params.py``
(``imgclf.data.params``: data, split, resize; ``imgclf.modeling.params``: train;
``imgclf.reporting.params``: evaluate; ``imgclf.serving.params``: export), so that a stage depends
only on the sections it reads. :mod:`imgclf.sections` lists them all.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from ruamel.yaml import YAML
from ruamel.yaml.constructor import ConstructorError
from ruamel.yaml.error import YAMLError

from imgclf.plumbing.errors import PipelineError

PARAMS_FILE = Path("params.yaml")


class ParamsError(PipelineError):
    """A parameter in params.yaml is missing, unknown, of the wrong type or out of range."""


@dataclass(frozen=True)
class Section:
    """Base of every params section (a frozen dataclass): ``validate`` checks values that the types alone cannot.

    A top-level section names its key in params.yaml (``key = "train"``); a nested one (``train.augment``)
    has none: it is read as a field of its section.
    """

    key: ClassVar[str | None] = None

    def validate(self, section: str) -> None:
        """Raise :class:`ParamsError` for an impossible value; ``section`` is the key's dotted prefix."""


def fail(key: str, value: Any, allowed: str) -> typing.NoReturn:
    raise ParamsError(f"params.yaml: {key} = {value!r} is not allowed: {allowed}.")


def require_fraction(key: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        fail(key, value, "use a fraction strictly between 0 and 1")


def require_positive(key: str, value: float) -> None:
    if value <= 0:
        fail(key, value, "use a number greater than 0")


def require_non_negative(key: str, value: float) -> None:
    if value < 0:
        fail(key, value, "use a number of 0 or more (0 turns it off)")


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
    if cls.key is None:
        raise TypeError(f"{cls.__name__} is not a section of params.yaml: it is a part of one (imgclf.sections "
                        "lists the sections); load the section that holds it")
    document = read_params_file(path)
    return parse_section(cls, document.get(cls.key) or {}, cls.key)


def parse_section(cls: type[SectionType], values: Any, section: str) -> SectionType:
    """Build a dataclass from a mapping, checking keys, types and ranges. Missing keys get defaults."""
    if not isinstance(values, dict):
        fail(section, values, f"expected a mapping with the keys {_field_names(cls)}")
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
            fail(key, value, "choose one of " + ", ".join(map(str, args)))
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
        fail(key, value, " or ".join(_describe(arg) for arg in alternatives)
              + (" or null" if type(None) in args else ""))
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:  # tuple[X, ...]: a list of any length
        if not isinstance(value, (list, tuple)):
            fail(key, value, "give a list, e.g. [] or [onnx]")
        return tuple(_coerce(args[0], item, key) for item in value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            fail(key, value, f"give a list of {len(args)} values")
        return tuple(_coerce(arg, item, key) for arg, item in zip(args, value, strict=True))
    if hint is bool:
        if not isinstance(value, bool):
            fail(key, value, "use true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail(key, value, "use a whole number")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail(key, value, "use a number (1e-3 and 0.001 both work)")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            fail(key, value, "use a string")
        return value
    raise TypeError(f"no coercion for the annotation {hint!r} of {key}")  # a bug in this module

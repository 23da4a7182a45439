"""Typed option sections: every option of a config section is a typed field with its one default.

A modality declares its ``data`` section as a frozen dataclass derived from :class:`DataOptions` (its fields, their
types, their defaults and a comment each); encoders and objectives declare theirs as the keyword arguments of their
constructors (``models.options(name)``, ``pretrain.objectives.options(cls)``). :func:`coerce` checks one value against a type hint, :func:`check_options` a whole section against a
schema (``{option: (hint, default)}``), so a typo or a wrong type ends in one line naming ``section.option`` before
any data is read. A :class:`DataOptions` is also a read-only mapping, so ``dict(options)`` and ``options["path"]``
work where a plain mapping is expected (a resolved ``config.yaml``, a benchmark's dict of overrides).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Iterator, TypeVar

__all__ = ["DataOptions", "OptionError", "check_options", "coerce"]

T = TypeVar("T", bound="DataOptions")


class OptionError(ValueError):
    """A bad option: one line naming ``section.option`` and what is wrong."""


_NONE = type(None)


def _hint_name(hint: Any) -> str:
    if hint is Any:
        return "any value"
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_hint_name(a) for a in typing.get_args(hint))
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(hint))
    if origin in (list, tuple, set, frozenset, Sequence) or hint in (list, tuple):
        return "a list"
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return "a mapping"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string", _NONE: "null"}.get(
        hint, getattr(hint, "__name__", str(hint)))


def _coerce(value: Any, hint: Any) -> Any:
    """``value`` as ``hint`` says, or raise ``TypeError``."""
    if hint is Any or hint is object:
        return value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and _NONE in args:
            return None
        for arg in args:  # in declaration order: ``int | str`` keeps 3 an integer
            if arg is _NONE:
                continue
            try:
                return _coerce(value, arg)
            except TypeError:
                pass
        raise TypeError
    if origin is typing.Literal:
        if value in typing.get_args(hint):
            return value
        raise TypeError
    if hint is _NONE:
        if value is None:
            return None
        raise TypeError
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise TypeError
    if hint is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TypeError
    if hint is float:
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise TypeError from None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise TypeError
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # YAML reads `units: 1` or a column named 2 as a number
        raise TypeError
    if origin in (list, tuple, Sequence) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise TypeError
        args = typing.get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise TypeError
            return tuple(_coerce(v, a) for v, a in zip(value, args))
        inner = args[0] if args else Any
        items = [_coerce(v, inner) for v in value]
        return tuple(items) if (origin is tuple or hint is tuple) else items
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        if isinstance(value, Mapping):
            return dict(value)
        raise TypeError
    if isinstance(hint, type):
        if isinstance(value, hint):
            return value
        raise TypeError
    return value  # a hint we do not check (a callable, a forward reference): taken as given


def coerce(value: Any, hint: Any, name: str) -> Any:
    """``value`` checked (and converted where lossless: 3.0 -> 3, 3 -> 3.0, a list -> a tuple) against ``hint``;
    :class:`OptionError` naming ``name`` when it does not fit."""
    try:
        return _coerce(value, hint)
    except TypeError:
        raise OptionError(f"{name}: expected {_hint_name(hint)}, got {value!r}") from None


def check_options(values: Mapping[str, Any], schema: Mapping[str, Any], section: str,
                  owner: str = "") -> dict[str, Any]:
    """``values`` checked against ``schema`` (``{option: hint}``): an unknown option or a value of the wrong type is
    one :class:`OptionError` naming ``section.option`` (and ``owner``, e.g. the encoder's name, with the known
    options); returns the converted values."""
    out = {}
    for key, value in values.items():
        if key not in schema:
            of = f" for {owner}" if owner else ""
            raise OptionError(f"{section}.{key}: unknown option{of}; known: {', '.join(schema) or 'none'}")
        out[key] = coerce(value, schema[key], f"{section}.{key}")
    return out


@dataclasses.dataclass(frozen=True)
class DataOptions(Mapping):
    """The ``data`` section every modality extends with its own typed fields.

    Build one with :meth:`of` (from a mapping: missing options take the field defaults, unknown ones and wrong
    types are refused in one line); change one with :meth:`replace`. The instance is immutable and reads like a
    mapping of its fields.
    """

    path: str | None = None  # --data: the training files (a folder or one file); None: the embedded default
    # evaluation (``python -m pretrain evaluate``, the report after training)
    probe_data: str | None = None  # --probe-data: labelled data for the modality's built-in probes
    probe_labels: str | None = None  # --probe-labels: the user's labels (a table, or events / points)
    probe_target: Any = None  # the label column(s) of --probe-labels when the table has several
    probe_knn_vote: str | None = None  # kNN vote of the classification probes: balanced (default) or plain
    id_column: str | None = None  # --probe-labels table: the column naming the record / file (default: detected)
    subject_column: str | None = None  # label tables: the column naming the subject (folds never split one)
    # fine-tuning (``python -m pretrain finetune``)
    labels: str | None = None  # events (annotations), points (per-point label files) or a label table
    targets: list[Any] = dataclasses.field(default_factory=list)  # the labels to predict (classes or columns)
    label_fraction: float | None = None  # train on this stratified fraction of the labelled items
    split_seed: int = 0  # seed of the train / val / test split and of the label-fraction subset

    @classmethod
    def schema(cls) -> dict[str, Any]:
        hints = typing.get_type_hints(cls)
        return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls)}

    @classmethod
    def of(cls: type[T], values: Mapping[str, Any] | None = None, section: str = "data") -> T:
        """The options ``values`` sets, the defaults for the rest; an instance of ``cls`` is returned as is."""
        if isinstance(values, cls):
            return values
        if values is not None and not isinstance(values, Mapping):
            raise OptionError(f"{section}: must be a mapping of options, got {values!r}")
        checked = check_options(dict(values or {}), cls.schema(), section, owner=cls.__name__)
        return cls(**checked)

    def replace(self: T, **changes: Any) -> T:
        """A copy with ``changes`` (checked like :meth:`of`)."""
        return type(self).of({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-serialisable values (tuples as lists)."""
        def plain(v: Any) -> Any:
            if isinstance(v, (list, tuple)):
                return [plain(x) for x in v]
            if isinstance(v, Mapping):
                return {k: plain(x) for k, x in v.items()}
            return v
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    # read-only mapping over the fields
    def __getitem__(self, key: str) -> Any:
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.__dataclass_fields__)

    def __len__(self) -> int:
        return len(self.__dataclass_fields__)

    __hash__ = None  # type: ignore[assignment]  # fields may be lists

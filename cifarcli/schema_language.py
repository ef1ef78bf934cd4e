"""The schema language: plain data that says what a document holds, and ``validate``.

A schema is plain data: a Python type (``int`` refuses bools, ``float`` accepts ints),
``None``, a dict literal (these keys, each of its schema; ``Opt`` marks a key that may
be absent; other keys are allowed), or one of the small classes below. Names in an
``Array`` or ``ListOf`` shape ("n", "K") must take one value throughout a document
(throughout one item, for names first bound inside a list's item).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class SchemaError(Exception):
    def __init__(self, where: str, problem: str):
        super().__init__(f"{where or 'the document'}: {problem}")


@dataclass(frozen=True)
class Array:
    """An ndarray of one of ``dtypes`` (names, or kinds such as "f" for any float) and ``shape``."""

    dtypes: tuple[str, ...]
    shape: tuple[int | str, ...]
    within: tuple[float, float] | None = None  # every value in [lo, hi]


@dataclass(frozen=True)
class ListOf:
    item: Any
    length: int | str | None = None


@dataclass(frozen=True)
class DictOf:
    key: Any
    value: Any


@dataclass(frozen=True)
class OneOf:
    options: tuple


@dataclass(frozen=True)
class Opt:
    """A dict value whose key may be absent."""

    schema: Any


@dataclass(frozen=True)
class Check:
    """``schema``, then ``test(value)`` must hold (e.g. a range, or agreement between two fields)."""

    schema: Any
    test: Callable[[Any], bool]
    what: str


HEX64 = Check(str, lambda s: len(s) == 64 and all(c in "0123456789abcdef" for c in s), "64 hex digits")
NUMBER = float


def validate(value: Any, schema: Any, where: str = "") -> None:
    """Raise ``SchemaError`` naming the first place where ``value`` does not fit ``schema``."""
    _validate(value, schema, where, {})


def _validate(value: Any, schema: Any, where: str, dims: dict) -> None:
    if schema is None:
        if value is not None:
            raise SchemaError(where, f"expected None, found {type(value).__name__}")
    elif isinstance(schema, type):
        if not _is_instance(value, schema):
            raise SchemaError(where, f"expected {schema.__name__}, found {type(value).__name__}")
    elif isinstance(schema, dict):
        _validate_dict(value, schema, where, dims)
    elif isinstance(schema, Array):
        _validate_array(value, schema, where, dims)
    elif isinstance(schema, ListOf):
        if not isinstance(value, list):
            raise SchemaError(where, f"expected a list, found {type(value).__name__}")
        if schema.length is not None:
            _bind(dims, schema.length, len(value), where, "length")
        for i, item in enumerate(value):  # each item its own scope: names it binds stay inside it
            _validate(item, schema.item, f"{where}[{i}]", dict(dims))
    elif isinstance(schema, DictOf):
        if not isinstance(value, dict):
            raise SchemaError(where, f"expected a dict, found {type(value).__name__}")
        for k, v in value.items():
            _validate(k, schema.key, f"{where} key {k!r}", dims)
            _validate(v, schema.value, f"{where}[{k!r}]", dims)
    elif isinstance(schema, OneOf):
        errors = []
        for option in schema.options:
            trial = dict(dims)
            try:
                _validate(value, option, where, trial)
            except SchemaError as error:
                errors.append(str(error))
                continue
            dims.update(trial)
            return
        raise SchemaError(where, "fits none of its forms (" + "; ".join(errors) + ")")
    elif isinstance(schema, Check):
        _validate(value, schema.schema, where, dims)
        if not schema.test(value):
            raise SchemaError(where, f"must be {schema.what}")
    else:
        raise TypeError(f"not a schema: {schema!r}")


def _is_instance(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return type(value) is kind or (kind is not bool and isinstance(value, kind))


def _validate_dict(value: Any, schema: dict, where: str, dims: dict) -> None:
    if not isinstance(value, dict):
        raise SchemaError(where, f"expected a dict, found {type(value).__name__}")
    for key, sub in schema.items():
        optional = isinstance(sub, Opt)
        if key not in value:
            if optional:
                continue
            raise SchemaError(where, f"missing key {key!r}")
        _validate(value[key], sub.schema if optional else sub, f"{where}.{key}" if where else key, dims)


def _validate_array(value: Any, schema: Array, where: str, dims: dict) -> None:
    import numpy as np

    if not isinstance(value, np.ndarray):
        raise SchemaError(where, f"expected an array, found {type(value).__name__}")
    if value.dtype.name not in schema.dtypes and value.dtype.kind not in schema.dtypes:
        raise SchemaError(where, f"dtype {value.dtype} is not {' or '.join(schema.dtypes)}")
    if value.ndim != len(schema.shape):
        raise SchemaError(where, f"shape {value.shape} is not {_shape_text(schema.shape)}")
    for size, expected in zip(value.shape, schema.shape):
        _bind(dims, expected, size, where, f"shape {value.shape} (expected {_shape_text(schema.shape)})")
    if schema.within is not None and value.size:
        lo, hi = schema.within
        if not (lo <= value.min() and value.max() <= hi):
            raise SchemaError(where, f"values outside {lo}..{hi}")


def _bind(dims: dict, expected: int | str, found: int, where: str, what: str) -> None:
    if isinstance(expected, int):
        if found != expected:
            raise SchemaError(where, f"{what}: {found}, not {expected}")
    elif dims.setdefault(expected, found) != found:
        raise SchemaError(where, f"{what}: {expected} is {found} here but {dims[expected]} elsewhere")


def _shape_text(shape: tuple) -> str:
    return "(" + " × ".join(str(s) for s in shape) + ")"


@dataclass(frozen=True)
class Schema:
    """What one stage's artifacts hold: its payload, and its meta.json's ``params`` and ``info``."""

    payload: Any
    params: Any = dict
    info: Any = dict
    inputs: Any = DictOf(str, str)  # the names of the inputs its key is made from
    meta: Any = dict  # the whole meta.json (e.g. info's epochs within params' settings)
    summary: Callable[[Any], dict] | None = None  # what info repeats of the payload: `cache verify` compares

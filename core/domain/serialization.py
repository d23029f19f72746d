"""Frozen dataclasses to JSON-ready dicts and back, driven by their field annotations.

Events and aggregate states share this one conversion, so an event's ``data`` and a snapshot's
state are written by the same rules. A dataclass's plan (one encoder and one decoder per field)
is built once from its annotations and cached; replay pays for a dict lookup and the field
conversions, never for introspection.

Supported field types: str, int, float, bool, datetime (ISO 8601, timezone-aware), Enum (its
value), ``X | None``, ``tuple[X, ...]``, ``Mapping[str, Any]`` (a JSON object, kept as is),
``Any`` and nested dataclasses. Anything else is refused when the plan is built, so an
unsupported field fails the first test that touches its class rather than a replay in
production.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from core.domain.errors import InvalidShape

__all__ = ["from_json_value", "to_json_value"]

T = TypeVar("T")

Encode = Callable[[Any], Any]
Decode = Callable[[Any], Any]


@dataclasses.dataclass(frozen=True, slots=True)
class _Field:
    name: str
    required: bool
    encode: Encode | None  # None: the value is already JSON (str, int, ...), copy it as is
    decode: Decode


@dataclasses.dataclass(frozen=True, slots=True)
class _Plan:
    fields: tuple[_Field, ...]
    names: frozenset[str]


_PLANS: dict[type, _Plan] = {}


def to_json_value(obj: object) -> dict[str, Any]:
    """The JSON-ready dict of a dataclass instance (field name to JSON value)."""
    plan = _plan_of(type(obj))
    out: dict[str, Any] = {}
    for f in plan.fields:
        value = getattr(obj, f.name)
        out[f.name] = value if f.encode is None else f.encode(value)
    return out


def from_json_value(cls: type[T], data: Mapping[str, Any], path: str | None = None) -> T:
    """Build ``cls`` from a JSON object, checking each field's type; raises InvalidShape.

    ``path`` prefixes the field path in errors (default: the class name).
    """
    try:
        return _decode_dataclass(cls, data)
    except InvalidShape as exc:
        raise InvalidShape((cls.__name__ if path is None else path) + exc.path, exc.reason) from exc


def _decode_dataclass(cls: type[T], data: Any) -> T:
    """Decode without building any path string; the happy path is what replay pays for.

    Errors carry the path relative to ``cls`` (".field[2].inner") and are prefixed on the way out.
    """
    plan = _PLANS.get(cls) or _plan_of(cls)
    if not isinstance(data, dict | Mapping):
        raise InvalidShape("", f"expected a JSON object, got {type(data).__name__}")
    kwargs: dict[str, Any] = {}
    for f in plan.fields:
        if f.name in data:
            try:
                kwargs[f.name] = f.decode(data[f.name])
            except InvalidShape as exc:
                raise InvalidShape(f".{f.name}{exc.path}", exc.reason) from exc
        elif f.required:
            raise InvalidShape(f".{f.name}", "missing")
    if len(kwargs) != len(data):
        raise InvalidShape("", f"unknown fields {sorted(data.keys() - plan.names)}")
    return cls(**kwargs)


def _plan_of(cls: type) -> _Plan:
    plan = _PLANS.get(cls)
    if plan is None:
        plan = _PLANS[cls] = _build_plan(cls)
    return plan


def _build_plan(cls: type) -> _Plan:
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__qualname__} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = []
    for f in dataclasses.fields(cls):
        encode, decode = _converter(hints[f.name], f"{cls.__qualname__}.{f.name}")
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        fields.append(_Field(f.name, required, encode, decode))
    return _Plan(tuple(fields), frozenset(f.name for f in fields))


def _converter(tp: Any, where: str) -> tuple[Encode | None, Decode]:
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        return _optional(tp, where)
    if origin is tuple:
        return _tuple(tp, where)
    if origin in (Mapping, dict) or tp in (Mapping, dict):
        return dict, _decode_object
    if tp is Any:
        return None, _decode_any
    if isinstance(tp, type):
        return _simple(tp, where)
    raise TypeError(f"{where}: unsupported field type {tp!r}")


def _simple(tp: type, where: str) -> tuple[Encode | None, Decode]:
    if tp is bool:
        return None, _decode_bool
    if tp is int:
        return None, _decode_int
    if tp is float:
        return None, _decode_float
    if tp is str:
        return None, _decode_str
    if tp is datetime:
        return datetime.isoformat, _decode_datetime
    if issubclass(tp, enum.Enum):
        return _enum(tp)
    if dataclasses.is_dataclass(tp):
        return to_json_value, lambda value: _decode_dataclass(tp, value)
    raise TypeError(f"{where}: unsupported field type {tp.__qualname__}")


def _optional(tp: Any, where: str) -> tuple[Encode | None, Decode]:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if len(args) != 1 or len(typing.get_args(tp)) != 2:
        raise TypeError(f"{where}: only 'X | None' unions are supported, got {tp!r}")
    inner_encode, inner_decode = _converter(args[0], where)

    def decode(value: Any) -> Any:
        return None if value is None else inner_decode(value)

    if inner_encode is None:
        return None, decode
    encode = inner_encode
    return (lambda value: None if value is None else encode(value)), decode


def _tuple(tp: Any, where: str) -> tuple[Encode | None, Decode]:
    args = typing.get_args(tp)
    if len(args) != 2 or args[1] is not Ellipsis:
        raise TypeError(f"{where}: only 'tuple[X, ...]' is supported, got {tp!r}")
    inner_encode, inner_decode = _converter(args[0], where)

    def decode(value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise InvalidShape("", f"expected a list, got {type(value).__name__}")
        items = []
        for i, item in enumerate(value):
            try:
                items.append(inner_decode(item))
            except InvalidShape as exc:
                raise InvalidShape(f"[{i}]{exc.path}", exc.reason) from exc
        return tuple(items)

    if inner_encode is None:
        return list, decode
    encode = inner_encode
    return (lambda value: [encode(item) for item in value]), decode


def _enum(tp: type[enum.Enum]) -> tuple[Encode, Decode]:
    def decode(value: Any) -> enum.Enum:
        try:
            return tp(value)
        except ValueError as exc:
            allowed = [m.value for m in tp]
            raise InvalidShape("", f"{value!r} is not one of {allowed}") from exc

    return (lambda member: member.value), decode


def _decode_any(value: Any) -> Any:
    return value


def _decode_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidShape("", f"expected a JSON object, got {type(value).__name__}")
    return dict(value)


def _decode_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidShape("", f"expected a bool, got {type(value).__name__}")
    return value


def _decode_int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidShape("", f"expected an int, got {type(value).__name__}")
    return value


def _decode_float(value: Any) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise InvalidShape("", f"expected a number, got {type(value).__name__}")
    return float(value)


def _decode_str(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidShape("", f"expected a string, got {type(value).__name__}")
    return value


def _decode_datetime(value: Any) -> datetime:
    if not isinstance(value, str):
        raise InvalidShape("", f"expected an ISO 8601 string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidShape("", f"{value!r} is not an ISO 8601 timestamp") from exc
    if parsed.tzinfo is None:
        raise InvalidShape("", f"{value!r} has no timezone")
    return parsed

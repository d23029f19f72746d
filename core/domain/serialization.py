"""Frozen dataclasses to JSON-ready dicts and back, driven by their field annotations.

Events and aggregate states share this one conversion, so an event's ``data`` and a snapshot's
state are written by the same rules. A dataclass's plan (one encoder and one decoder per field)
is built once from its annotations and cached; replay pays for a dict lookup and the field
conversions, never for introspection.

A field is stored under its own name, or under the key ``stored_as(key)`` names in its metadata
(``field(metadata=stored_as("from"))``), for a stored key that is not a Python identifier.

Supported field types: str, int, float, bool, datetime (ISO 8601, timezone-aware), Enum (its
value), ``X | None``, ``tuple[X, ...]``, ``Mapping[str, Any]`` (a JSON object, kept as is),
``Any`` and nested dataclasses. Anything else is refused when the plan is built, so an
unsupported field fails the first test that touches its class rather than a replay in
production.

Decoding has two paths that accept exactly the same data. The generic one walks the plan,
calling one decoder per field, and is the reference: it decides what is refused and with which
error. The compiled one (``decoder_of``) is generated once per class as straight-line Python
that checks each field inline and fills the instance's slots directly (a slotted dataclass
without ``__post_init__``; any other goes through its constructor). It is what replay runs,
because the generic walk's calls per field cost more than the checks themselves. It accepts
only what it can prove the generic path accepts, with the same result (exact types: ``str``,
``int`` but not ``bool``, a ``dict`` for an object, a timezone-aware ISO 8601 string), and
hands anything else, valid or not, to the generic path. So a malformed payload is always
refused by the generic code with its named error, and stored data is never trusted for having
been written by our own encoder: every field of every event is checked on every read.
``with_changes`` (core.domain.decider) builds its copies with the same generated slot filling.
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

__all__ = [
    "builds_without_init",
    "compile_function",
    "decoder_of",
    "from_json_value",
    "slot_setters",
    "stored_as",
    "to_json_value",
]

T = TypeVar("T")

Encode = Callable[[Any], Any]
Decode = Callable[[Any], Any]


_STORED_AS = "chronicle.stored_as"


def stored_as(key: str) -> dict[str, str]:
    """Field metadata: store this field under ``key`` rather than under its Python name."""
    return {_STORED_AS: key}


@dataclasses.dataclass(frozen=True, slots=True)
class _Field:
    name: str
    key: str  # the JSON key: the name, unless the field's metadata says otherwise
    required: bool
    encode: Encode | None  # None: the value is already JSON (str, int, ...), copy it as is
    decode: Decode


@dataclasses.dataclass(frozen=True, slots=True)
class _Plan:
    fields: tuple[_Field, ...]
    keys: frozenset[str]


_PLANS: dict[type, _Plan] = {}


def to_json_value(obj: object) -> dict[str, Any]:
    """The JSON-ready dict of a dataclass instance (field name to JSON value)."""
    plan = _plan_of(type(obj))
    out: dict[str, Any] = {}
    for f in plan.fields:
        value = getattr(obj, f.name)
        out[f.key] = value if f.encode is None else f.encode(value)
    return out


def from_json_value(cls: type[T], data: Mapping[str, Any], path: str | None = None) -> T:
    """Build ``cls`` from a JSON object, checking each field's type; raises InvalidShape.

    ``path`` prefixes the field path in errors (default: the class name).
    """
    try:
        return decoder_of(cls)(data)
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
        if f.key in data:
            try:
                kwargs[f.name] = f.decode(data[f.key])
            except InvalidShape as exc:
                raise InvalidShape(f".{f.key}{exc.path}", exc.reason) from exc
        elif f.required:
            raise InvalidShape(f".{f.key}", "missing")
    if len(kwargs) != len(data):
        raise InvalidShape("", f"unknown fields {sorted(data.keys() - plan.keys)}")
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
        fields.append(_Field(f.name, f.metadata.get(_STORED_AS, f.name), required, encode, decode))
    return _Plan(tuple(fields), frozenset(f.key for f in fields))


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


# --- the compiled decoder --------------------------------------------------------------------

_DECODERS: dict[type, Callable[[Any], Any]] = {}


def decoder_of(cls: type[T]) -> Callable[[Any], T]:
    """The compiled decoder of ``cls``: a JSON object to an instance, or InvalidShape.

    Errors carry the path relative to ``cls`` (".field[2].inner"), as the generic decoder's do.
    """
    decoder = _DECODERS.get(cls)
    if decoder is None:
        decoder = _DECODERS[cls] = _compile_decoder(cls)
    return decoder


def _compile_decoder(cls: type) -> Callable[[Any], Any]:
    """Straight-line code for ``cls``: fetch every field, check it inline, build the instance.

    Any doubt ends in ``return generic(data)``: the generic decoder then either builds the
    same value or raises the error it always raised, with its path. A nested dataclass is
    decoded by its own compiled decoder and a type with no inline check by the plan's field
    decoder; an InvalidShape from either sends the whole object to the generic path too.
    """
    plan = _plan_of(cls)
    hints = typing.get_type_hints(cls)
    defaults = {f.name: f for f in dataclasses.fields(cls)}
    env: dict[str, Any] = {"cls": cls, "generic": lambda data: _decode_dataclass(cls, data)}
    body = ["if type(data) is not dict:", "    return generic(data)"]
    required = sum(f.required for f in plan.fields)
    optional = len(plan.fields) - required
    if optional:
        body.append("present = 0")
    else:
        body += [f"if len(data) != {required}:", "    return generic(data)"]
    body.append("try:")
    for i, f in enumerate(plan.fields):
        if f.required:
            body += [f"    v{i} = data[{f.key!r}]", *_indent(_check(hints[f.name], f"v{i}", env), 1)]
        else:
            env[f"default_{i}"] = _default_of(defaults[f.name])
            body += [
                f"    v{i} = data.get({f.key!r}, missing)",
                f"    if v{i} is missing:",
                f"        v{i} = default_{i}()",
                "    else:",
                "        present += 1",
                *_indent(_check(hints[f.name], f"v{i}", env), 2),
            ]
    # Whatever goes wrong (a missing key, a bad timestamp, a field decoder's InvalidShape, even
    # an OverflowError from float()), the generic path meets it again and decides the outcome.
    body += ["except Exception:", "    return generic(data)"]
    if optional:
        body += [f"if len(data) != {required} + present:", "    return generic(data)"]
    env |= {"missing": _MISSING, "fromiso": datetime.fromisoformat}
    body += _construct(cls, [f.name for f in plan.fields], env)
    return compile_function(f"decode_{cls.__name__}", ["data"], body, env, cls)


_MISSING = object()


def _default_of(f: dataclasses.Field[Any]) -> Callable[[], Any]:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory
    default = f.default
    return lambda: default


def _construct(cls: type, names: list[str], env: dict[str, Any]) -> list[str]:
    args = [f"v{i}" for i in range(len(names))]
    if not builds_without_init(cls):
        return ["return cls(" + ", ".join(f"{n}={a}" for n, a in zip(names, args, strict=True)) + ")"]
    for i, setter in enumerate(slot_setters(cls, tuple(names))):
        env[f"set_{i}"] = setter
    env["new"] = object.__new__
    return [
        "instance = new(cls)",
        *(f"set_{i}(instance, {a})" for i, a in enumerate(args)),
        "return instance",
    ]


def _check(tp: Any, var: str, env: dict[str, Any]) -> list[str]:
    """Lines that check ``var`` against ``tp`` and convert it in place; on doubt, ``return generic``."""
    bail = "    return generic(data)"
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        inner = next(a for a in typing.get_args(tp) if a is not type(None))
        return [f"if {var} is not None:", *_indent(_check(inner, var, env), 1)]
    if origin is tuple:
        item, items = f"{var}_item", f"{var}_items"
        return [
            *(f"if type({var}) is not list:", bail, f"{items} = []", f"for {item} in {var}:"),
            *_indent(_check(typing.get_args(tp)[0], item, env), 1),
            *(f"    {items}.append({item})", f"{var} = tuple({items})"),
        ]
    if origin in (Mapping, dict) or tp in (Mapping, dict):
        return [f"if type({var}) is not dict:", bail, f"{var} = dict({var})"]
    if tp is Any:
        return []
    if tp in (str, int, bool):
        return [f"if type({var}) is not {tp.__name__}:", bail]
    if tp is float:
        return [
            *(f"if type({var}) is not float:", f"    if type({var}) is not int:"),
            *("    " + bail, f"    {var} = float({var})"),
        ]
    if tp is datetime:
        return [
            f"if type({var}) is not str:",
            bail,
            f"{var} = fromiso({var})",
            f"if {var}.tzinfo is None:",
            bail,
        ]
    if isinstance(tp, type) and issubclass(tp, enum.Enum) and all(type(m.value) is str for m in tp):
        env[f"members_{var}"] = {m.value: m for m in tp}
        return [
            f"{var} = members_{var}.get({var}) if type({var}) is str else None",
            f"if {var} is None:",
            bail,
        ]
    # A nested dataclass gets its own compiled decoder (looked up when called, so a class may
    # nest itself); any other type, the plan's decoder. Either raises InvalidShape on a value
    # it refuses, which sends the whole object to the generic path.
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        nested: type = tp
        env[f"decode_{var}"] = lambda value: decoder_of(nested)(value)
    else:
        env[f"decode_{var}"] = _converter(tp, var)[1]
    return [f"{var} = decode_{var}({var})"]


def _indent(lines: list[str], depth: int) -> list[str]:
    return ["    " * depth + line for line in lines]


def builds_without_init(cls: type) -> bool:
    """Whether an instance of ``cls`` may be filled slot by slot instead of through ``__init__``.

    True for a slotted dataclass whose generated ``__init__`` only stores its fields: no
    ``__post_init__`` to run, no field left out of ``__init__``, every field a slot.
    """
    if not dataclasses.is_dataclass(cls) or hasattr(cls, "__post_init__"):
        return False
    fields = dataclasses.fields(cls)
    params = getattr(cls, "__dataclass_params__", None)
    return (
        params is not None
        and params.init
        and all(f.init for f in fields)
        and all(isinstance(getattr(cls, f.name, None), types.MemberDescriptorType) for f in fields)
    )


def slot_setters(cls: type, names: tuple[str, ...]) -> list[Callable[[object, Any], None]]:
    """Each named slot's own setter, which stores past a frozen dataclass's ``__setattr__``."""
    return [getattr(cls, name).__set__ for name in names]


def compile_function(
    name: str, params: list[str], body: list[str], env: dict[str, Any], owner: type
) -> Callable[..., Any]:
    """A function generated from ``body`` lines, as ``dataclasses`` builds ``__init__``.

    Only identifiers and the ``repr`` of field names and stored keys (string literals) reach
    the source; values reach the function through ``env``, never through the text.
    """
    source = f"def {name}({', '.join(params)}):\n" + "".join(f"    {line}\n" for line in body)
    namespace = dict(env)
    exec(compile(source, f"<{owner.__qualname__}.{name}>", "exec"), namespace)  # noqa: S102 (see docstring)
    function: Callable[..., Any] = namespace[name]
    function.__qualname__ = f"{owner.__qualname__}.{name}"
    return function

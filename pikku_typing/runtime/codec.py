"""Typed JSON round trip of step data, step results, run input and output.

Stored values are plain JSON. A value is encoded with the type it is declared with (an RPC's
return annotation, an inline callable's return annotation, ``result_type=``, a workflow's
input/output annotation) using a pydantic ``TypeAdapter``, and rebuilt from JSON with the
same type on replay: pydantic models, dataclasses, TypedDicts, ``datetime``, ``Decimal``,
``UUID``... come back as they went in. Nothing is ever unpickled or imported by name from
stored data: the type always comes from the code.

Without a declared type (``None``/``Any``/unresolvable: a lambda), plain JSON values are
accepted (``dict`` with ``str`` keys, ``list``, ``str``, ``int``, ``float``, ``bool``,
``None``) plus the self-describing scalars ``Decimal``, ``datetime``, ``date``, ``time``,
``timedelta``, ``UUID`` and tuples, stored as ``{"__pikku_type__": "decimal", "value": ...}``
(a fixed list of tags: nothing is imported by name). Models and dataclasses need a type.

:func:`encode` checks at first execution that the value survives the round trip (dump to
JSON, rebuild, compare) and raises :class:`StepSerializationError` naming the problem.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import math
import types
import typing
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import partial
from typing import Any, Final, get_type_hints
from uuid import UUID

import typing_extensions as te
from pydantic import TypeAdapter

from pikku_typing.errors import StepSerializationError

_adapters: dict[Any, TypeAdapter[Any]] = {}
_adapters_by_id: dict[int, tuple[Any, TypeAdapter[Any]]] = {}
_PLAIN_SCALARS: Final = (str, int, bool, type(None))
_SCALAR_TYPES: Final = frozenset({str, int, bool, float})
"""Declared types whose values of exactly that class are their own JSON (a float: when
finite): encoded, coerced and decoded as they are, without a ``TypeAdapter`` round trip
(the answer the round trip gives)."""


def _as_is(value: Any, type_: Any) -> bool:
    """Is ``value`` its own JSON as a ``type_`` (see ``_SCALAR_TYPES``)?"""
    return (
        type(value) is type_
        and type_ in _SCALAR_TYPES
        and (type_ is not float or math.isfinite(value))
    )


def is_untyped(type_: Any) -> bool:
    return type_ is None or type_ is Any or type_ is object or isinstance(type_, str)


_compat_cache: dict[Any, Any] = {}


def _compat(type_: Any) -> Any:
    """Rewrite ``typing.TypedDict`` classes (refused by pydantic before Python 3.12) into
    equivalent ``typing_extensions.TypedDict`` classes, anywhere inside ``type_``."""
    if isinstance(type_, type) and typing.is_typeddict(type_):
        if type(type_).__module__ != "typing":
            return type_
        cached = _compat_cache.get(type_)
        if cached is not None:
            return cached
        try:
            hints = get_type_hints(type_, include_extras=True)
        except Exception:
            hints = dict(getattr(type_, "__annotations__", {}))
        required = getattr(type_, "__required_keys__", frozenset(hints))
        fields: dict[str, Any] = {}
        for name, hint in hints.items():
            origin = typing.get_origin(hint)
            is_required = name in required
            if origin in (typing.NotRequired, te.NotRequired):
                is_required, hint = False, typing.get_args(hint)[0]
            elif origin in (typing.Required, te.Required):
                is_required, hint = True, typing.get_args(hint)[0]
            inner = _compat(hint)
            fields[name] = te.Required[inner] if is_required else te.NotRequired[inner]
        rebuilt: Any = te.TypedDict(type_.__name__, fields)  # type: ignore[misc]
        rebuilt.__module__ = type_.__module__
        rebuilt.__qualname__ = type_.__qualname__
        _compat_cache[type_] = rebuilt
        return rebuilt
    args = typing.get_args(type_)
    if not args:
        return type_
    new_args = tuple(_compat(a) if not isinstance(a, list) else [_compat(x) for x in a] for a in args)
    if all(a is b for a, b in zip(new_args, args, strict=True)):
        return type_
    origin = typing.get_origin(type_)
    try:
        if origin is typing.Annotated:
            return typing.Annotated[(new_args[0], *type_.__metadata__)]
        if origin is typing.Union or origin is types.UnionType:
            return typing.Union[new_args]  # noqa: UP007
        return type_.copy_with(new_args) if hasattr(type_, "copy_with") else origin[new_args]
    except Exception:
        return type_


def adapter(type_: Any) -> TypeAdapter[Any]:
    """A cached ``TypeAdapter`` for ``type_``."""
    try:
        found = _adapters.get(type_)
    except TypeError:  # unhashable annotation
        entry = _adapters_by_id.get(id(type_))
        if entry is not None and entry[0] is type_:
            return entry[1]
        ta: TypeAdapter[Any] = TypeAdapter(_compat(type_))
        _adapters_by_id[id(type_)] = (type_, ta)
        return ta
    if found is None:
        found = TypeAdapter(_compat(type_))
        _adapters[type_] = found
    return found


_TAG: Final = "__pikku_type__"
_TAGGED: Final[dict[type, str]] = {
    Decimal: "decimal",
    datetime: "datetime",
    date: "date",
    time: "time",
    timedelta: "timedelta",
    UUID: "uuid",
}


def _tag(value: Any, path: str) -> Any:
    """Plain JSON of an untyped value; the self-describing scalars (Decimal, datetime, date,
    time, timedelta, UUID) and tuples become ``{"__pikku_type__": ..., "value": ...}``."""
    cls = type(value)
    if cls in _PLAIN_SCALARS:
        return value
    if cls is float:
        if not math.isfinite(value):
            raise _Problem(f"{path} is {value!r} (not finite)")
        return value
    if cls is list:
        return [_tag(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if cls is dict:
        out: dict[str, Any] = {}
        for k, item in value.items():
            if not isinstance(k, str):
                raise _Problem(f"{path} has a non-string key {k!r}")
            if k == _TAG:
                raise _Problem(f"{path} uses the reserved key {_TAG!r}")
            out[k] = _tag(item, f"{path}[{k!r}]")
        return out
    if cls is tuple:
        return {_TAG: "tuple", "value": [_tag(item, f"{path}[{i}]") for i, item in enumerate(value)]}
    tag = _TAGGED.get(cls)
    if tag is None:
        raise _Problem(f"{path} is a {cls.__qualname__}")
    if cls is timedelta:
        return {_TAG: tag, "value": value.total_seconds()}
    if cls in (datetime, date, time):
        return {_TAG: tag, "value": value.isoformat()}
    return {_TAG: tag, "value": str(value)}


def _untag(data: Any) -> Any:
    cls = type(data)
    if cls is list:
        return [_untag(item) for item in data]
    if cls is not dict:
        return data
    tag = data.get(_TAG)
    if tag is None:
        return {k: _untag(v) for k, v in data.items()}
    raw = data.get("value")
    if tag == "tuple":
        return tuple(_untag(item) for item in raw)
    if tag == "decimal":
        return Decimal(raw)
    if tag == "datetime":
        return datetime.fromisoformat(raw)
    if tag == "date":
        return date.fromisoformat(raw)
    if tag == "time":
        return time.fromisoformat(raw)
    if tag == "timedelta":
        return timedelta(seconds=raw)
    if tag == "uuid":
        return UUID(raw)
    raise StepSerializationError(f"unknown stored value tag {tag!r}")


class _Problem(Exception):
    pass


def encode(value: Any, type_: Any, *, what: str) -> tuple[Any, Any]:
    """Return ``(json, value_as_replay_returns_it)`` of ``value`` declared as ``type_``; raise
    :class:`StepSerializationError` when it cannot come back equal with the same type."""
    if is_untyped(type_):
        if type(value) in _PLAIN_SCALARS:
            return value, value
        try:
            encoded = _tag(value, "the value")
        except _Problem as exc:
            raise StepSerializationError(
                f"{what}: {exc}, which cannot round-trip through JSON without a declared "
                "type; annotate the function's return type (or the RPC's), or pass "
                "result_type=... to workflow.do"
            ) from None
        return encoded, value
    if _as_is(value, type_):
        return value, value
    ta = adapter(type_)
    try:
        encoded = ta.dump_python(value, mode="json", warnings="error")
    except Exception as exc:
        raise StepSerializationError(
            f"{what}: {type(value).__qualname__} value cannot be serialized as "
            f"{_type_name(type_)}: {exc}"
        ) from exc
    try:
        text = json.dumps(encoded, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StepSerializationError(f"{what}: not JSON-serializable: {exc}") from exc
    try:
        rebuilt = ta.validate_python(json.loads(text))
    except Exception as exc:
        raise StepSerializationError(
            f"{what}: the value does not match its declared type {_type_name(type_)} "
            f"and would not come back on replay: {exc}"
        ) from exc
    try:
        equal = bool(rebuilt == value)
    except Exception:
        equal = False
    if not equal:
        raise StepSerializationError(
            f"{what}: the value does not survive a JSON round trip as {_type_name(type_)} "
            f"(got back {rebuilt!r}, expected {value!r})"
        )
    return encoded, rebuilt


def coerce(value: Any, type_: Any, *, what: str) -> tuple[Any, Any]:
    """Validate ``value`` against ``type_`` (lax: a dict for a model is accepted) and return
    ``(typed_value, json)``: used for RPC step data and workflow input."""
    if is_untyped(type_):
        encoded, _ = encode(value, None, what=what)
        return value, encoded
    if _as_is(value, type_):
        return value, value
    ta = adapter(type_)
    try:
        typed = ta.validate_python(value)
        encoded = ta.dump_python(typed, mode="json")
        json.dumps(encoded, allow_nan=False)
    except Exception as exc:
        raise StepSerializationError(
            f"{what}: does not match {_type_name(type_)}: {exc}"
        ) from exc
    return typed, encoded


def decode(data: Any, type_: Any, *, what: str) -> Any:
    """Rebuild a stored JSON value with its declared type."""
    if is_untyped(type_):
        return data if type(data) in _PLAIN_SCALARS or type(data) is float else _untag(data)
    if _as_is(data, type_):
        return data
    try:
        return adapter(type_).validate_python(data)
    except Exception as exc:
        raise StepSerializationError(
            f"{what}: the stored value cannot be rebuilt as {_type_name(type_)}: {exc}"
        ) from exc


def digest(data: Any) -> str:
    """A stable digest of a JSON value (sorted keys)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _type_name(type_: Any) -> str:
    name = getattr(type_, "__qualname__", None)
    return name if isinstance(name, str) else repr(type_)


_hint_cache: dict[Any, Any] = {}


def callable_return_type(fn: Callable[..., Any]) -> Any:
    """The (awaited) return annotation of an inline step's callable, or ``None``."""
    target: Any = fn
    while isinstance(target, partial):
        target = target.func
    code = getattr(target, "__code__", None)
    key: Any = code if code is not None else target
    try:
        return _hint_cache[key]
    except (KeyError, TypeError):
        pass
    result: Any = None
    try:
        hints = get_type_hints(target)
        result = hints.get("return")
    except Exception:
        raw = getattr(target, "__annotations__", {}).get("return")
        result = None if isinstance(raw, str) else raw
    if result is not None and not inspect.iscoroutinefunction(target):
        origin = typing.get_origin(result)
        from collections import abc

        if origin in (abc.Awaitable, abc.Coroutine):
            args = typing.get_args(result)
            result = args[-1] if args else None
    if result is type(None):
        result = None
    with contextlib.suppress(TypeError):
        _hint_cache[key] = result
    return result

"""Configuration recorded from constructor arguments, and a registry of buildable classes."""
from __future__ import annotations

import collections.abc
import functools
import inspect
import math
import types
import typing
from typing import Any, Literal, Union

REGISTRY: dict[str, type] = {}


def encode_value(value: Any) -> Any:
    """Turn a constructor argument into JSON: configurable objects become nested configs."""
    if hasattr(value, "config") and _registered_name(value) is not None:
        return value.config()
    if isinstance(value, (list, tuple)):
        return [encode_value(v) for v in value]
    if isinstance(value, dict):
        return {k: encode_value(v) for k, v in value.items()}
    if hasattr(value, "tolist"):  # tensors and arrays
        return value.tolist()
    return value


def _registered_name(obj) -> str:
    """The nearest registered class of obj (FSDP wraps a network in a generated subclass, FSDPMLP of MLP)."""
    return next((c.__name__ for c in type(obj).__mro__ if REGISTRY.get(c.__name__) is c), None)


def configurable(cls: type) -> type:
    """Class decorator: record the constructor's arguments so `obj.config()` can rebuild it."""
    init = cls.__init__
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapped(self, *args, **kwargs):
        if not hasattr(self, "_recorded"):
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            arguments.pop("self")
            object.__setattr__(self, "_recorded", arguments)
        init(self, *args, **kwargs)

    cls.__init__ = wrapped
    cls.config = lambda self: {"class": _registered_name(self),
                               **{k: encode_value(v) for k, v in self._recorded.items()}}
    REGISTRY[cls.__name__] = cls
    return cls


def build(config: dict) -> Any:
    """Rebuild an object (and its nested objects) from `obj.config()`."""
    def decode(value):
        if isinstance(value, dict) and "class" in value:
            return build(value)
        if isinstance(value, list):
            return [decode(v) for v in value]
        return value

    config = dict(config)
    name = config.pop("class", None)
    if name not in REGISTRY:
        raise ValueError(f"config: unknown class {name!r}; known: {sorted(REGISTRY)}")
    return REGISTRY[name](**{k: decode(v) for k, v in config.items()})


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(hint))
    if hint in (list, tuple) or origin in (list, tuple, collections.abc.Sequence):
        return "a list"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            dict: "a mapping"}.get(hint, getattr(hint, "__name__", str(hint)))


def coerce(value: Any, hint: Any, name: str) -> Any:
    """`value` checked against a type annotation (as a config file spells it) and converted where lossless.

    Integers must be integral (10.7 is refused, not truncated), booleans must be true/false (never 1 or 'yes'),
    and numbers may come as strings, because YAML 1.1 reads '1e-3' as a string.
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    bad = ValueError(f"{name}: expected {_type_name(hint)}, got {value!r}")
    if hint is Any or hint is inspect.Parameter.empty:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(value, a, name)
            except ValueError:
                pass
        raise bad
    if origin is Literal:
        if value in args and not isinstance(value, bool):
            return value
        raise bad
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if hint is int or hint is float:
        if isinstance(value, bool) or value is None:
            raise bad
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise bad from None
        if not isinstance(value, (int, float)):
            raise bad
        if hint is float:
            return float(value)
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            raise bad
        return int(value)
    if hint is str:
        if isinstance(value, str):
            return value
        raise bad
    if hint is dict or origin is dict:
        if isinstance(value, dict):
            return value
        raise bad
    if hint in (list, tuple) or origin in (list, tuple, collections.abc.Sequence):
        if not isinstance(value, (list, tuple)):
            raise bad
        if origin is tuple:  # tuple[X, ...] checks each item; fixed-length tuples are left to the constructor
            inner = args[0] if len(args) == 2 and args[1] is Ellipsis else None
        else:
            inner = args[0] if args else None
        out = [coerce(v, inner, f"{name}[{i}]") if inner is not None else v for i, v in enumerate(value)]
        return tuple(out) if hint is tuple or origin is tuple else out
    return value


def check_arguments(where: str, fn: Any, values: Any, *, reserved: dict | None = None) -> dict:
    """A config section checked against the constructor it feeds: a mapping, known keys, values of the annotated types.

    `reserved` maps keys the library sets itself to why (they are refused, naming the reason). `where` is the
    section's name in messages ('' for the top level of a config file)."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ValueError(f"{where or 'config'}: expected a mapping of settings, got {values!r}")
    target = fn.__init__ if isinstance(fn, type) else fn
    params = {k: p for k, p in inspect.signature(target).parameters.items()
              if k != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    hints = typing.get_type_hints(target)
    out = {}
    for key, value in values.items():
        if not isinstance(key, str):
            raise ValueError(f"{where or 'config'}: keys must be names, got {key!r}")
        name = f"{where}.{key}" if where else key
        if reserved and key in reserved:
            raise ValueError(f"{name}: {reserved[key]}; remove it from the config")
        if key not in params:
            raise ValueError(f"{where or 'config'}: unknown key {key!r}; expected some of "
                             f"{sorted(set(params) - set(reserved or {}))}")
        out[key] = coerce(value, hints.get(key, Any), name)
    return out


def require(ok: bool, name: str, expected: str, value: Any) -> None:
    """Raise the library's one-line error `name: expected ..., got value` unless `ok`."""
    if not ok:
        raise ValueError(f"{name}: expected {expected}, got {value!r}")

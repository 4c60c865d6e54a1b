"""Configuration recorded from constructor arguments, and a registry of buildable classes."""
from __future__ import annotations

import functools
import inspect
from typing import Any

REGISTRY: dict[str, type] = {}


def _encode(value: Any) -> Any:
    """Turn a constructor argument into JSON: configurable objects become nested configs."""
    if hasattr(value, "config") and getattr(type(value), "__name__", None) in REGISTRY:
        return value.config()
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if hasattr(value, "tolist"):  # tensors and arrays
        return value.tolist()
    return value


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
    cls.config = lambda self: {"class": type(self).__name__,
                               **{k: _encode(v) for k, v in self._recorded.items()}}
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

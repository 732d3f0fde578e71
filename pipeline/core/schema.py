"""Typed, range-checked parameters: the machinery that turns a nested mapping into the library's own
parameter types (each type declares its fields, range rules and choices once, where it is used).

The stages compose a plain nested dict (Hydra, from ``params.yaml``) and hand it to
``parse(Config, cfg)``. A wrong type, a missing or unknown key, or an out-of-range value raises
``ConfigError`` whose message starts with the dotted key (``ep.beta: must be > 0, got -0.1``).
This module is plain Python: the science package never imports Hydra or OmegaConf.

Range rules live in each field's metadata: ``gt`` / ``ge`` / ``le`` (numbers, or every item of
a list of numbers), ``choices``, ``min_len`` / ``max_len``, ``pattern`` (regular expression for
strings). Cross-field rules live in a dataclass's ``check(path)`` method; a class method
``prepare(data)`` may rewrite the mapping before it is parsed (the root config's ``variant``: a
set of overrides deep-merged over ``eqspike``).
"""

from __future__ import annotations

import contextvars
import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import field
from typing import Any, ClassVar


class ConfigError(ValueError):
    """A configuration value is missing, of the wrong type or out of range. Names the key."""


def _meta(**rules: Any) -> dict:
    return {"rules": rules}


def opt(default: Any, **rules: Any) -> Any:
    """A dataclass field with a default and range rules."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=_meta(**rules))
    return field(default=default, metadata=_meta(**rules))


class Checked:
    """Mixin of a parameter type: an instance built directly (not by ``parse``, which checks
    first and names the real key) checks its own fields' rules too, and ``check`` when it takes
    no other field's type into account; errors name ``config_path.<field>``."""

    config_path: ClassVar[str] = ""

    def __post_init__(self) -> None:
        parsing = _PARSING.get()
        path = parsing or self.config_path
        if not parsing:  # ``parse`` has checked every field's rules already, naming the key
            for f in dataclasses.fields(self):
                value = getattr(self, f.name)
                if value is not None:
                    _check_rules(value, f.metadata.get("rules", {}), _join(path, f.name))
        if hasattr(self, "check"):
            self.check(path or type(self).__name__)


# the dotted key of the mapping ``parse`` is building (so that a ``Checked`` type names it)
_PARSING: contextvars.ContextVar[str] = contextvars.ContextVar("parsing", default="")


def req(**rules: Any) -> Any:
    """A required dataclass field (no default) with range rules."""
    return field(metadata=_meta(**rules))


# --------------------------------------------------------------------------------------------
# The parser
# --------------------------------------------------------------------------------------------


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _check_rules(value: Any, rules: Mapping[str, Any], path: str) -> None:
    items = value if isinstance(value, list) else [value]
    if "min_len" in rules and len(value) < rules["min_len"]:
        raise ConfigError(f"{path}: needs at least {rules['min_len']} item(s), got {value!r}")
    if "max_len" in rules and len(value) > rules["max_len"]:
        raise ConfigError(f"{path}: takes at most {rules['max_len']} item(s), got {value!r}")
    if "choices" in rules and any(v not in rules["choices"] for v in items):  # a list: every item
        raise ConfigError(f"{path}: must be one of {list(rules['choices'])}, got {value!r}")
    if "pattern" in rules and not re.fullmatch(rules["pattern"], value):
        raise ConfigError(f"{path}: {value!r} does not match the pattern {rules['pattern']!r}")
    for v in items:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if "gt" in rules and not v > rules["gt"]:
            raise ConfigError(f"{path}: must be > {rules['gt']}, got {value!r}")
        if "ge" in rules and not v >= rules["ge"]:
            raise ConfigError(f"{path}: must be >= {rules['ge']}, got {value!r}")
        if "le" in rules and not v <= rules["le"]:
            raise ConfigError(f"{path}: must be <= {rules['le']}, got {value!r}")
        if "lt" in rules and not v < rules["lt"]:
            raise ConfigError(f"{path}: must be < {rules['lt']}, got {value!r}")


def _convert(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, path)
    if tp is Any:
        return value
    if value is None:
        raise ConfigError(f"{path}: must not be null (expected {_type_name(tp)})")
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        _, inner = typing.get_args(tp)
        return {str(k): _convert(inner, v, _join(path, str(k))) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if dataclasses.is_dataclass(value):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return parse(tp, value, path)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        (inner,) = typing.get_args(tp)
        return [_convert(inner, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    raise TypeError(f"schema type {tp!r} at {path} is not supported")  # a bug in the schema


def parse(cls: type, data: Mapping[str, Any], path: str = "") -> Any:
    """Build dataclass ``cls`` from the nested mapping ``data``, validating every value."""
    if hasattr(cls, "prepare"):
        data = cls.prepare(data)
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{_join(path, unknown[0])}: unknown key (known: {sorted(known)})")
    kwargs = {}
    for f in dataclasses.fields(cls):
        key = _join(path, f.name)
        if f.name in data:
            value = _convert(hints[f.name], data[f.name], key)
        elif f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            raise ConfigError(f"{key}: missing required key")
        if value is not None:
            _check_rules(value, f.metadata.get("rules", {}), key)
        kwargs[f.name] = value
    token = _PARSING.set(path or "config")
    try:
        obj = cls(**kwargs)
    finally:
        _PARSING.reset(token)
    if hasattr(obj, "check") and not isinstance(obj, Checked):
        obj.check(path or "config")
    return obj


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists of scalars stay values, lists of mappings
    are indexed (``data.sources.0.kind``)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = _join(prefix, k)
        if isinstance(v, Mapping):
            out.update(flatten(v, key))
        elif isinstance(v, list) and any(isinstance(i, Mapping) for i in v):
            out.update(flatten({str(i): item for i, item in enumerate(v)}, key))
        else:
            out[key] = v
    return out


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over``'s values replacing its own, mappings merged key by key."""
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out

"""Typed parameter sections: every config dataclass field carries a help string and its allowed values.

    @dataclass
    class SFTConfig:
        max_steps: int = option(120, "optimizer steps", ge=1)

`from_section(SFTConfig, params["sft"]["train"], "sft.train")` builds a config from a params.yaml section and checks
every key before any model loads: unknown keys, types, ranges and allowed values, each error naming the key
(`sft.train.max_steps: must be >= 1, got 0`). `validate` repeats the checks on an instance (configs built in code
validate themselves in `__post_init__`), and `help_table` renders the fields as the Markdown table the docs show.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Mapping

from emoloom.core.errors import ParamError


def option(default: Any = dataclasses.MISSING, help: str = "", *, ge: float | None = None, gt: float | None = None,
           le: float | None = None, lt: float | None = None, choices: tuple | None = None,
           default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with its help string and allowed values (bounds apply to numbers, choices to any value)."""
    meta = {"help": help, "ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, arm) for arm in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin in (tuple, list):
        args = typing.get_args(hint)
        if not isinstance(value, (tuple, list)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_type_ok(v, args[0]) for v in value)
        return len(value) == len(args) and all(_type_ok(v, a) for v, a in zip(value, args))
    if origin is dict:
        return isinstance(value, dict)
    return isinstance(value, hint) if isinstance(hint, type) else True


def _type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "") if not isinstance(hint, type) else hint.__name__


def _check(value: Any, f: dataclasses.Field, hint: Any, key: str) -> None:
    if not _type_ok(value, hint):
        raise ParamError(f"{key}: expected {_type_name(hint)}, got {value!r}")
    meta = f.metadata
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise ParamError(f"{key}: must be one of {', '.join(map(str, meta['choices']))}; got {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        for bound, ok, words in (("ge", lambda v, b: v >= b, ">="), ("gt", lambda v, b: v > b, ">"),
                                 ("le", lambda v, b: v <= b, "<="), ("lt", lambda v, b: v < b, "<")):
            if meta.get(bound) is not None and not ok(value, meta[bound]):
                raise ParamError(f"{key}: must be {words} {meta[bound]}, got {value!r}")


def validate(config: Any, where: str = "") -> None:
    """Check every field of a config instance against its type hint, bounds and choices (ParamError names the key)."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        _check(getattr(config, f.name), f, hints[f.name], f"{where}.{f.name}" if where else f.name)


def from_section(cls: type, section: Mapping | None, where: str, **overrides: Any):
    """`cls` from a params section (plus overrides): unknown or mistyped keys raise ParamError naming them."""
    if section is None:
        section = {}
    if not isinstance(section, Mapping):
        raise ParamError(f"{where}: expected a mapping of keys, got {type(section).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(section) - set(known))
    if unknown:
        raise ParamError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(known)}")
    values = {**section, **overrides}
    for name, value in values.items():
        if typing.get_origin(hints[name]) is tuple and isinstance(value, list):
            values[name] = tuple(value)                 # YAML has lists only
        _check(values[name], known[name], hints[name], f"{where}.{name}")
    config = cls(**values)
    validate(config, where)
    return config


def split_section(section: Mapping | None, where: str, *classes: type) -> list:
    """One params section that feeds several config classes: each key goes to the class that has it; a key no
    class knows raises ParamError naming it. Returns one validated instance per class, in order."""
    if section is None:
        section = {}
    if not isinstance(section, Mapping):
        raise ParamError(f"{where}: expected a mapping of keys, got {type(section).__name__}")
    names = [{f.name for f in dataclasses.fields(c) if f.init} for c in classes]
    unknown = sorted(set(section) - set().union(*names))
    if unknown:
        raise ParamError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(set().union(*names)))}")
    return [from_section(c, {k: v for k, v in section.items() if k in n}, where) for c, n in zip(classes, names)]


def require(condition: bool, message: str) -> None:
    """A cross-field rule of a config: ParamError(message) unless it holds."""
    if not condition:
        raise ParamError(message)


def help_table(cls: type) -> str:
    """The fields of a config class as a Markdown table: key, default, allowed values, help."""
    lines = ["| key | default | allowed | meaning |", "|---|---|---|---|"]
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "(required)")
        meta = f.metadata
        allowed = [_type_name(hints[f.name])]
        if meta.get("choices") is not None:
            allowed = [" \\| ".join(map(str, meta["choices"]))]
        for bound, words in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if meta.get(bound) is not None:
                allowed.append(f"{words} {meta[bound]}")
        lines.append(f"| `{f.name}` | `{default}` | {', '.join(allowed)} | {meta.get('help', '')} |")
    return "\n".join(lines) + "\n"

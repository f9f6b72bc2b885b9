"""Reading a config: TOML parsed safely, and dataclasses built from its tables with unknown keys,
wrong types and out-of-range values rejected in one line that names the file and the dotted key.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from stream_detector.config.references import expand, read_value_file
from stream_detector.errors import ConfigError

T = TypeVar("T")


def check(ok: bool, key: str, why: str) -> None:
    """A range check in a config dataclass's __post_init__: the message names the key."""
    if not ok:
        raise ConfigError(f"{key}: {why}")


def from_mapping(cls: type[T], data: Any, where: str, env: Mapping[str, str] | None = None) -> T:
    """Build dataclass `cls` from a TOML table, rejecting unknown keys and wrong types.

    `where` is the dotted path used in messages ("file.toml: cameras.door.fps"). Strings may hold
    `${NAME}` (taken from `env`, default the process environment) and any string key KEY may be
    given as `KEY_file` instead (read from that file).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table")
    env = os.environ if env is None else env
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    data = _read_value_files(data, fields, hints, where, env)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}.{shown_key(unknown[0])}: unknown key (allowed: {', '.join(sorted(fields))})")
    missing = [n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where}.{missing[0]}: required key missing")
    values = {}
    for name, value in data.items():
        values[name] = _coerce(value, hints[name], f"{where}.{name}", env)
    try:
        return cls(**values)
    except ConfigError as exc:
        raise ConfigError(f"{where}.{exc}") from None
    except TypeError as exc:  # a value the checks above let through; still one line, not a traceback
        raise ConfigError(f"{where}: {exc}") from None


def _read_value_files(data: dict[str, Any], fields: Mapping[str, Any], hints: Mapping[str, Any],
                      where: str, env: Mapping[str, str]) -> dict[str, Any]:
    """KEY_file (for a string KEY that is not itself named so) replaced by KEY = its contents."""
    out = dict(data)
    for name in sorted(data):
        key = name.removesuffix("_file")
        if name == key or name in fields or key not in fields or hints[key] is not str:
            continue
        path = _coerce(out.pop(name), str, f"{where}.{name}", env)
        if key in data:
            raise ConfigError(f"{where}.{name}: set {key} or {name}, not both")
        if not path:
            raise ConfigError(f"{where}.{name}: must not be empty")
        out[key] = read_value_file(path, f"{where}.{name}")
    return out


def _coerce(value: Any, hint: Any, where: str, env: Mapping[str, str]) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, options[0], where, env)
    if dataclasses.is_dataclass(hint):
        return from_mapping(hint, value, where, env)  # type: ignore[arg-type]
    if origin in (tuple, list):
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {shown(value)}")
        args = typing.get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis:  # fixed length: (x, y)
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, f"{where}[{i}]", env)
                         for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{where}[{i}]", env) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {shown(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {shown(value)}")
        if abs(value) > 1e15:  # also keeps float() from overflowing on huge integers
            raise ConfigError(f"{where}: {shown(value)} is out of range")
        return float(value)
    if hint in (int, str, bool):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise ConfigError(f"{where}: expected {hint.__name__}, got {shown(value)}")
        if hint is str:
            value = expand(value, where, env)
            if any(ord(c) < 32 or ord(c) == 127 for c in value):
                raise ConfigError(f"{where}: must not contain control characters (newline, tab, NUL)")
        return value
    return value


def shown(value: Any) -> str:
    """A value for a one-line message: repr'd (quotes, escaped newlines) and shortened."""
    try:
        text = repr(value)
    except ValueError:  # an integer with thousands of digits
        return f"a very large {type(value).__name__}"
    return text if len(text) <= 60 else text[:57] + "..."


def shown_key(key: str) -> str:
    """A key as written, unless it holds characters that would break the line."""
    return key if key.isprintable() else shown(key)


MAX_CONFIG_BYTES = 1 << 20  # a config is a few KB; anything near this is the wrong file


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; any I/O, encoding or syntax problem becomes a one-line ConfigError."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES >> 20} MB: not a config file")
    if raw.startswith(b"\xef\xbb\xbf"):
        raise ConfigError(f"{path}: starts with a byte-order mark (BOM); save it as UTF-8 without BOM")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {exc.start}): a binary file?") from None
    if "\x00" in text:
        raise ConfigError(f"{path}: contains NUL bytes: a binary file?")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid TOML (nested too deeply)") from None


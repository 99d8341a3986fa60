"""Strict YAML → frozen dataclass loading.

Precedence: dataclass defaults, then the file, then ``--set a.b=v`` overrides (:func:`apply_overrides`).
Unknown keys, wrong types and missing required keys raise :class:`ConfigError` naming the file, the key
path and the allowed keys or values (with a did-you-mean hint). Nothing is ever silently ignored.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from fm4npp.errors import ConfigError, allowed_list, did_you_mean

T = TypeVar("T")


MAX_YAML_BYTES = 1 << 20  # a sweep file or cluster profile is a few KiB; 1 MiB is plenty
MAX_YAML_NODES = 100_000  # nodes after expanding aliases: stops an alias bomb before it is built
MAX_INT = 2**63 - 1  # every integer of a config fits an int64 (DuckDB BIGINT, torch, numpy)


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing, oversized, non-UTF-8 or binary file, a parse error, an alias bomb
    or a non-mapping is a one-line ConfigError."""
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    size = path.stat().st_size
    if size > MAX_YAML_BYTES:
        raise ConfigError(f"{path}: {size} bytes; a config file must be under {MAX_YAML_BYTES} bytes")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}); give a YAML file") from None
    if "\x00" in text:
        raise ConfigError(f"{path}: binary file (NUL byte); give a YAML file")
    return parse_yaml(text, str(path))


def parse_yaml(text: str, source: str) -> dict[str, Any]:
    """Parse YAML text into a mapping (see :func:`read_yaml`)."""
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is not None:
                _check_expanded_size(node, source)
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = " ".join(str(getattr(err, "problem", None) or err).split())
        raise ConfigError(f"{source}: invalid YAML{where}: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{source}: YAML nested too deeply") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _check_expanded_size(root: yaml.Node, source: str) -> None:
    """Count the nodes of the document with aliases expanded (memoised per node, so it is fast)."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ConfigError(f"{source}: recursive YAML alias; not allowed in a config")
        active.add(key)
        if isinstance(node, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(v) for v in node.value)
        else:
            total = 1
        active.discard(key)
        sizes[key] = total
        if total > MAX_YAML_NODES:
            raise ConfigError(
                f"{source}: YAML expands to more than {MAX_YAML_NODES} values (alias bomb?); not allowed"
            )
        return total

    size(root)


def load_dataclass(cls: type[T], data: Any, source: str, key: str = "") -> T:
    """Build ``cls`` from ``data`` strictly. ``source`` (a file name) and ``key`` prefix every error."""
    return typing.cast(T, _convert(cls, data, source, key))


def _where(source: str, key: str) -> str:
    return f"{printable(source)}: {printable(key)}" if key else printable(source)


def printable(text: str) -> str:
    """``text`` with control characters escaped, so that an error message stays one line."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _convert(tp: Any, value: Any, source: str, key: str) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _convert_dataclass(tp, value, source, key)
    if tp is Any:
        return value
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            hint = did_you_mean(str(value), [str(a) for a in allowed])
            raise ConfigError(
                f"{_where(source, key)}: {value!r} is not allowed{hint}; allowed: {allowed_list(map(str, allowed))}"
            )
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, source, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(
            errors[0] if len(errors) == 1 else f"{_where(source, key)}: invalid value {value!r}"
        )
    if origin in (tuple, list):
        args = get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{_where(source, key)}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{_where(source, key)}: expected {len(args)} items, got {len(value)}")
            return tuple(
                _convert(a, v, source, f"{key}[{i}]")
                for i, (a, v) in enumerate(zip(args, value, strict=True))
            )
        item = args[0] if args else Any
        items = [_convert(item, v, source, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{_where(source, key)}: expected a mapping, got {value!r}")
        ktp, vtp = get_args(tp) or (Any, Any)
        return {
            _convert(ktp, k, source, f"{key}.{k}"): _convert(vtp, v, source, f"{key}.{k}")
            for k, v in value.items()
        }
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{_where(source, key)}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ConfigError(f"{_where(source, key)}: expected an integer, got {value!r}")
        if not -MAX_INT - 1 <= value <= MAX_INT:
            raise ConfigError(
                f"{_where(source, key)}: {value} is out of range (an int64 is at most {MAX_INT})"
            )
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            number = None
            if isinstance(value, str):
                with contextlib.suppress(ValueError):
                    number = float(value)  # YAML 1.1 reads 2e-4 as a string
            if number is None:
                raise ConfigError(f"{_where(source, key)}: expected a number, got {value!r}")
            value = number
        try:
            out = float(value)
        except OverflowError:  # an integer beyond the float range
            out = math.inf
        if not math.isfinite(out):
            raise ConfigError(f"{_where(source, key)}: expected a finite number, got {value!r}")
        return out
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{_where(source, key)}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r} at {key}")  # pragma: no cover - programming error


def _convert_dataclass(cls: type, value: Any, source: str, key: str) -> Any:
    if dataclasses.is_dataclass(value) and isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise ConfigError(f"{_where(source, key)}: expected a mapping, got {value!r}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for name in value:
        if name not in fields:
            path = f"{key}.{name}" if key else str(name)
            raise ConfigError(
                f"{printable(source)}: unknown key '{printable(path)}'{did_you_mean(str(name), fields)}; "
                f"allowed keys{' under ' + key if key else ''}: {allowed_list(fields)}"
            )
    kwargs = {}
    for name, f in fields.items():
        path = f"{key}.{name}" if key else name
        if name in value:
            kwargs[name] = _convert(hints[name], value[name], source, path)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{source}: required key '{path}' is missing")
    try:
        return cls(**kwargs)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def apply_overrides(data: dict[str, Any], overrides: list[str], source: str) -> dict[str, Any]:
    """Apply ``a.b=value`` overrides (values parsed as YAML) to a nested mapping, returning a copy."""
    out = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{source}: override {item!r} must look like key.path=value")
        path, raw = item.split("=", 1)
        node = out
        parts = path.strip().split(".")
        if not all(parts):
            raise ConfigError(f"{source}: override {item!r}: empty key in {path.strip()!r}")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{source}: override {item!r}: '{part}' is not a mapping")
        if len(raw) > MAX_YAML_BYTES:
            raise ConfigError(
                f"{source}: override {path.strip()!r}: value longer than {MAX_YAML_BYTES} bytes"
            )
        node[parts[-1]] = _parse_override_value(raw, item, source)
    return typing.cast(dict[str, Any], out)


def _parse_override_value(raw: str, item: str, source: str) -> Any:
    """The value of ``key=value`` parsed as a YAML document (size-checked); errors are one line."""
    where = f"{source}: override {item!r}"
    try:
        loader = yaml.SafeLoader(raw)
        try:
            node = loader.get_single_node()
            if node is not None:
                _check_expanded_size(node, where)
            return loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as err:
        problem = " ".join(str(getattr(err, "problem", None) or err).split())
        raise ConfigError(f"{where}: invalid YAML value: {problem}") from None


def to_dict(obj: Any) -> Any:
    """Dataclass (nested) → plain dict/list structure suitable for YAML/JSON."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj

"""The generic, schema-agnostic half of the config system: YAML with ``_base_`` inheritance, ``--set`` overrides and
strict conversion into (nested) dataclasses from their type hints.

``training.config`` holds the experiment schema and re-exports what users need (`load_config`, `ConfigError`, ...).
Every problem raises `ConfigError` naming the dotted key and the file (or ``--set`` override) that set it.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from alrp.validation import ConfigValueError

OVERRIDE_SOURCE = "--set"


class ConfigError(ValueError):
    """A config problem; ``key`` is the dotted key (or '' for the whole file), ``file`` where the value came from."""

    def __init__(self, file: str, key: str, message: str) -> None:
        self.file, self.key = str(file), key
        super().__init__(f"{file}: {key or '<top level>'}: {message}")


# ----------------------------------------------------------------------------------------------- YAML reading
def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(path, "", "file not found")
    text = path.read_text()
    try:
        duplicate = _duplicate_key(yaml.compose(text, Loader=yaml.SafeLoader))
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(path, "", f"invalid YAML: {err}") from None
    if duplicate is not None:
        raise ConfigError(path, duplicate[0], f"duplicate key ({duplicate[1]}); YAML would silently keep the last")
    if data is None:
        raise ConfigError(path, "", "the file is empty (set at least one key, e.g. `_base_: other.yaml`)")
    if not isinstance(data, dict):
        raise ConfigError(path, "", f"the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def _duplicate_key(node: yaml.Node | None, prefix: str = "") -> tuple[str, str] | None:
    """(dotted key, "lines a and b") of the first key repeated within one YAML mapping, or None."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            name = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            line = key_node.start_mark.line + 1
            if name in seen:
                where = f"line {line}" if seen[name] == line else f"lines {seen[name]} and {line}"
                return f"{prefix}{name}", where
            seen[name] = line
            found = _duplicate_key(value_node, f"{prefix}{name}.")
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found = _duplicate_key(item, f"{prefix.removesuffix('.')}[{i}].")
            if found:
                return found
    return None


def _origin(origins: dict[str, str], key: str, default: str) -> str:
    """Source of a dotted key: the file (or override) that set it, that set all of its children (a section
    created by one override), or that set its nearest parent."""
    if key in origins:
        return origins[key]
    children = {src for k, src in origins.items() if k.startswith(key + ".")}
    if len(children) == 1:
        return children.pop()
    parts = key.split(".")
    for n in range(len(parts) - 1, 0, -1):
        src = origins.get(".".join(parts[:n]))
        if src is not None:
            return src
    return default


def _merge(base: dict, child: dict, origins: dict[str, str], source: Callable[[str], str], prefix: str = "") -> None:
    """Deep-merge ``child`` into ``base`` in place, recording the source of every replaced key."""
    for k, v in child.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v, origins, source, key + ".")
            continue
        base[k] = copy.deepcopy(v)
        for stale in [o for o in origins if o.startswith(key + ".")]:
            del origins[stale]
        origins[key] = source(key)


def _load_tree(path: Path, stack: tuple[Path, ...]) -> tuple[dict, dict[str, str]]:
    """Read ``path`` and its ``_base_`` chain; returns (merged dict, {dotted key: source file})."""
    path = path.resolve()
    if path in stack:
        chain = " -> ".join(str(p) for p in stack + (path,))
        raise ConfigError(stack[-1], "_base_", f"circular inheritance: {chain}")
    raw = _read_yaml(path)
    bases = raw.pop("_base_", [])
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list) or not all(isinstance(b, str) and b for b in bases):
        raise ConfigError(path, "_base_", f"must be a relative file path or a list of them, got {bases!r}")
    merged: dict = {}
    origins: dict[str, str] = {}
    for base in bases:
        base_path = path.parent / base
        if not base_path.is_file():
            raise ConfigError(path, "_base_", f"base file not found: {base_path}")
        base_data, base_origins = _load_tree(base_path, stack + (path,))
        _merge(merged, base_data, origins, lambda k, o=base_origins, d=str(base_path.resolve()): _origin(o, k, d))
    _merge(merged, raw, origins, lambda k: str(path))
    return merged, origins


def parse_override(text: str) -> tuple[str, Any]:
    """``'a.b=value'`` -> ``('a.b', yaml.safe_load('value'))``."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(OVERRIDE_SOURCE, key, f"override {text!r} must look like section.key=value")
    try:
        return key, yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise ConfigError(OVERRIDE_SOURCE, key, f"cannot parse value {value!r}: {err}") from None


def _apply_override(data: dict, origins: dict[str, str], text: str) -> None:
    key, value = parse_override(text)
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{OVERRIDE_SOURCE} {text}", ".".join(parts[:i + 1]), "is not a section")
    parent = ".".join(parts[:-1])
    _merge(node, {parts[-1]: value}, origins, lambda k: f"{OVERRIDE_SOURCE} {text}", f"{parent}." if parent else "")


# ----------------------------------------------------------------------------------------------- typed building
_SCI_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")  # '1e-4': a string in YAML 1.1, a float to us


class _Ctx:
    def __init__(self, origins: dict[str, str], default_file: str) -> None:
        self.origins, self.default_file = origins, default_file

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(_origin(self.origins, key, self.default_file), key, message)

    def section_error(self, key: str, message: str) -> ConfigError:
        sources = sorted({v for k, v in self.origins.items() if not key or k == key or k.startswith(key + ".")})
        return ConfigError(", ".join(sources) or self.default_file, key, message)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(tp: Any, value: Any, key: str, ctx: _Ctx) -> Any:
    """Check/convert one YAML value against a type hint (strict: bool is not int, 'yes' is not bool)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ctx.error(key, f"expected a section (mapping) for {tp.__name__}, got {value!r}")
        return _build(tp, value, key, ctx)
    if origin is typing.Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        for option in options:
            try:
                return _convert(option, value, key, ctx)
            except ConfigError as err:
                last = err
        if len(options) == 1:
            raise last
        raise ctx.error(key, f"expected {_type_name(tp)}, got {value!r}")
    if origin is typing.Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise ctx.error(key, f"{value!r} is not one of {list(args)}")
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ctx.error(key, f"expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ctx.error(key, f"expected {len(args)} items, got {len(value)}")
            return tuple(_convert(a, v, f"{key}[{i}]", ctx) for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        items = [_convert(item, v, f"{key}[{i}]", ctx) for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or tp is tuple) else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ctx.error(key, f"expected a mapping, got {value!r}")
        kt, vt = args or (Any, Any)
        return {_convert(kt, k, key, ctx): _convert(vt, v, f"{key}.{k}", ctx) for k, v in value.items()}
    return _convert_scalar(tp, value, key, ctx)


def _convert_scalar(tp: Any, value: Any, key: str, ctx: _Ctx) -> Any:
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        if isinstance(value, str) and _SCI_FLOAT.fullmatch(value.strip()):
            value = float(value)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
        if ok and not math.isfinite(value):  # '1e400' and .inf parse as inf, .nan as nan
            raise ctx.error(key, f"must be a finite number, got {value!r}")
    elif tp is str:
        ok = isinstance(value, str)
    elif tp is Path:
        ok = isinstance(value, (str, Path))
        value = Path(value) if ok else value
    else:
        ok = isinstance(tp, type) and isinstance(value, tp)
    if not ok:
        raise ctx.error(key, f"expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    return value


def _build(cls: type, data: dict, prefix: str, ctx: _Ctx) -> Any:
    """Instantiate dataclass ``cls`` from ``data``: unknown keys, missing required fields and wrong types raise."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    join = (lambda k: f"{prefix}.{k}") if prefix else (lambda k: k)
    for k in data:
        if k not in fields:
            close = difflib.get_close_matches(str(k), list(fields), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(fields)})"
            raise ctx.error(join(k), f"unknown key{hint}")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], join(name), ctx)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ctx.section_error(join(name), "missing required value")
    try:
        return cls(**kwargs)
    except ConfigValueError as err:  # a section's own check: name the file that set the key
        raise ctx.error(err.key, err.message) from None
    except (ValueError, TypeError) as err:
        # validators write "field: message": name that field's source, not every source of the section
        name, sep, message = str(err).partition(": ")
        if sep and name in fields:
            raise ctx.error(join(name), message) from None
        raise ctx.section_error(prefix, str(err)) from None


def load_config(path: str | Path, overrides: Sequence[str], schema: type) -> Any:
    """YAML ``path`` + its ``_base_`` chain + ``overrides`` -> an instance of the dataclass ``schema``.

    The documented entry point is `training.config.load_config` (``schema`` defaults to ``Config`` there). A schema
    with a ``name`` field gets the file's stem when the YAML leaves it empty. Raises `ConfigError`.
    """
    path = Path(path)
    data, origins = _load_tree(path, ())
    for text in overrides:
        _apply_override(data, origins, text)
    ctx = _Ctx(origins, str(path.resolve()))
    if "name" in {f.name for f in dataclasses.fields(schema)} and not data.get("name"):
        data["name"] = path.stem
        origins.setdefault("name", str(path.resolve()))
    return _build(schema, data, "", ctx)


def config_to_dict(cfg: Any) -> dict:
    """Plain nested dict (lists, no tuples) of a config dataclass: what ``load_config`` reads back."""
    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return str(v) if isinstance(v, Path) else v
    return plain(dataclasses.asdict(cfg))

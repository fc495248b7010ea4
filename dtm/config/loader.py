"""Typed loading of dataclass configs from YAML files and ``key=value`` overrides.

Configs are plain dataclasses (nested dataclasses act as sections). Values are
type-checked against the annotations and every error is a :class:`ConfigError`
naming the offending dotted key and, when known, the file it came from.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import inspect
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """Invalid configuration; the message names the dotted key (and file, if any)."""


def check(condition: bool, key: str, message: str) -> None:
    """Raise ``ConfigError("key: message")`` unless ``condition`` holds (for ``__post_init__`` checks)."""
    if not condition:
        raise ConfigError(f"{key}: {message}")


def load_config(cls: type[T], path: str | Path | Mapping[str, Any] | None = None, overrides: Sequence[str] = ()) -> T:
    """Build ``cls`` from an optional YAML file (or an already-read mapping), then apply ``section.key=value``
    overrides.

    Override values are parsed as YAML (``lr=1e-3``, ``layers=[1,2]``, ``flag=true``).
    """
    data: dict[str, Any] = {}
    if isinstance(path, Mapping):
        data, path = copy.deepcopy(dict(path)), None
    elif path is not None:
        if Path(path).is_dir():
            raise ConfigError(f"--config {path}: is a folder; give a YAML file (e.g. configs/dtm-maze.yaml)")
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML: {e}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping of keys, got {type(loaded).__name__}")
        data = loaded
    overridden = {}
    for override in overrides:
        overridden[_apply_override(cls, data, override)] = override
    try:
        return from_dict(cls, data)
    except ConfigError as e:
        key = str(e).split(":", 1)[0]
        culprit = next((o for k, o in overridden.items() if key == k or key.startswith(f"{k}.")), None)
        if culprit is not None:
            raise ConfigError(f"override {culprit!r}: {e}") from None
        raise _error(None if path is None else str(path), str(e)) from None


def from_dict(cls: type[T], data: Mapping[str, Any], *, source: str | None = None, prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, recursively type-checking and coercing every field.

    ``source`` (e.g. a file path) and ``prefix`` (dotted path of this section) only shape error messages.
    A :class:`ConfigError` raised by ``cls.__post_init__`` is re-raised with ``prefix`` and ``source`` added.
    """
    types = _field_types(cls)
    for name in data:
        if name not in types:
            raise _unknown_key(cls, str(name), types, prefix, source)
    kwargs = {}
    for field in dataclasses.fields(cls):
        key = prefix + field.name
        if field.name in data:
            kwargs[field.name] = _coerce(data[field.name], types[field.name], key, source)
        elif field.init and field.default is field.default_factory is dataclasses.MISSING:
            raise _error(source, f"{key}: missing required key")
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise _error(source, prefix + str(e)) from None


def coerce_arguments(fn: Any, values: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """``values`` checked against the keyword parameters of ``fn`` (a class: its ``__init__``) the way config keys
    are: an unknown name suggests the closest parameter, a value of the wrong type names the annotation; returns
    the values converted (int -> float, ...)."""
    target = fn.__init__ if isinstance(fn, type) else fn
    hints = get_type_hints(target)
    params = [name for name in inspect.signature(target).parameters if name != "self"]
    for name in values:
        if name not in params:
            raise _unknown_key(fn, str(name), params, prefix, None)
    return {name: _coerce(value, hints.get(name, Any), prefix + name, None) for name, value in values.items()}


def config_differences(saved: Mapping[str, Any], given: Mapping[str, Any], ignore: Iterable[str] = ()) -> list[str]:
    """One ``key: old in the run, new now`` line per top-level key whose value differs (``ignore``d keys aside)."""
    ignored = set(ignore)
    return [
        f"{key}: {saved.get(key)!r} in the run, {given.get(key)!r} now"
        for key in sorted(set(saved) | set(given))
        if key not in ignored and saved.get(key) != given.get(key)
    ]


def to_dict(cfg: Any) -> dict[str, Any]:
    """Convert a dataclass config to plain dicts/lists, suitable for ``yaml.safe_dump`` or ``json``."""
    return {f.name: _plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if f.init}


def save_config(cfg: Any, path: str | Path) -> None:
    """Write ``cfg`` as YAML to ``path`` (creating parent directories); ``load_config`` reads it back."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8")


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return to_dict(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _error(source: str | None, text: str) -> ConfigError:
    return ConfigError(f"{source}: {text}" if source else text)


def _field_types(cls: type) -> dict[str, Any]:
    """Resolved annotations of the init fields of dataclass ``cls``."""
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _unknown_key(cls: type, name: str, valid: Iterable[str], prefix: str, source: str | None) -> ConfigError:
    """An unknown key's error: the key it was renamed to (a class's ``renamed_keys``), else the closest valid key."""
    renamed = getattr(cls, "renamed_keys", {})
    if name in renamed:
        return _error(source, f"{prefix}{name}: renamed to {prefix}{renamed[name]}")
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(valid)}"
    return _error(source, f"{prefix}{name}: unknown key; {hint}")


def type_name(tp: Any) -> str:
    """A readable name of annotation ``tp``: ``int``, ``list[int]``, ``str | None``, ``'sar' | 'uniform'``."""
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, source: str | None) -> Any:
    """Check ``value`` against annotation ``tp`` and return it converted (int->float, list->tuple, ...)."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, UnionType):
        if value is None and NoneType in args:
            return None
        options = [a for a in args if a is not NoneType]
        errors = []
        for option in options:
            try:
                return _coerce(value, option, key, source)
            except ConfigError as e:
                errors.append(e)
        if len(errors) == 1:
            raise errors[0]
    elif origin is Literal:
        if value in args:
            return value
        allowed = ", ".join(repr(a) for a in args)
        raise _error(source, f"{key}: must be one of {allowed}, got {value!r}")
    elif dataclasses.is_dataclass(tp):
        if isinstance(value, Mapping):
            return from_dict(tp, value, source=source, prefix=f"{key}.")
    elif origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, list | tuple):
            if origin is tuple and args and args[-1] is not Ellipsis:
                if len(value) != len(args):
                    raise _error(source, f"{key}: expected {len(args)} items, got {len(value)}")
                item_types = args
            else:
                item_types = (args[0] if args else Any,) * len(value)
            items = [
                _coerce(v, t, f"{key}[{i}]", source) for i, (v, t) in enumerate(zip(value, item_types, strict=True))
            ]
            return tuple(items) if tuple in (origin, tp) else items
    elif origin is dict or tp is dict:
        if isinstance(value, Mapping):
            key_type, value_type = args or (Any, Any)
            return {
                _coerce(k, key_type, f"{key}.{k}", source): _coerce(v, value_type, f"{key}.{k}", source)
                for k, v in value.items()
            }
    elif tp is float and isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            pass
    elif isinstance(value, tp) and (tp is bool or not isinstance(value, bool)):
        return value
    raise _error(source, f"{key}: expected {type_name(tp)}, got {type(value).__name__} {value!r}")


def _apply_override(cls: type, data: dict[str, Any], override: str) -> str:
    """Set ``data[section][key] = yaml(value)`` for ``override = "section.key=value"``, checking the key (keys inside a
    free-form mapping such as ``task_options`` are not checked here; they may nest: ``method_options.dtm.h=2``).
    Returns the dotted key."""
    key, sep, raw = override.partition("=")
    key = key.strip()
    where = f"override {override!r}"
    if not sep or not key:
        raise ConfigError(f"{where}: expected 'key=value' or 'section.key=value'")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: cannot parse value as YAML: {e}") from None
    *parents, leaf = key.split(".")
    node, section, prefix = data, cls, ""
    for depth, part in enumerate(parents):
        types = _field_types(section)
        if part not in types:
            raise _unknown_key(section, part, types, prefix, where)
        if get_origin(types[part]) is dict:  # free-form mappings: task_options.style=x, shared.sampling.steps=8
            for name in parents[depth:]:
                options = node.setdefault(name, {})
                if not isinstance(options, dict):
                    raise ConfigError(f"{where}: {prefix}{name} is set to {options!r}, not a mapping")
                node, prefix = options, f"{prefix}{name}."
            node[leaf] = value
            return key
        section = section_type(types[part])
        if section is None:
            raise ConfigError(f"{where}: {prefix}{part} is not a section, cannot set {key}")
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"{where}: {prefix}{part} is set to {child!r}, not a section")
        node, prefix = child, f"{prefix}{part}."
    types = _field_types(section)
    if leaf not in types:
        raise _unknown_key(section, leaf, types, prefix, where)
    _coerce(value, types[leaf], key, where)  # validate now so errors name the override, not the file
    node[leaf] = value
    return key


def section_type(tp: Any) -> type | None:
    """The dataclass behind annotation ``tp`` (``Section`` or ``Section | None``), else None."""
    options = [a for a in get_args(tp) if a is not NoneType] if get_origin(tp) in (Union, UnionType) else [tp]
    if len(options) == 1 and dataclasses.is_dataclass(options[0]):
        return options[0]
    return None

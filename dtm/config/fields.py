"""Config fields that carry their help text, and the reference of every key built from them.

A field is declared ``lr: float = setting(1e-3, "peak learning rate")``; ``describe`` walks a config class (and its
sections) into rows of key, type, default and help, which ``dtm config show`` prints and docs/configs.md holds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, get_type_hints

from dtm.config.loader import section_type, type_name


def setting(default: Any = dataclasses.MISSING, help: str = "", *, factory: Callable[[], Any] | None = None) -> Any:
    """A dataclass field with help text; ``factory`` builds a mutable default (a list, a dict, a section)."""
    metadata = {"help": help}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class KeyHelp:
    """One config key: dotted name, type, default (as YAML would show it) and help text."""

    key: str
    type: str
    default: str
    help: str
    annotation: Any = dataclasses.field(default=None, compare=False, repr=False)


def describe(cls: type, prefix: str = "") -> list[KeyHelp]:
    """Every key of config class ``cls``, sections expanded into dotted keys, in declaration order."""
    hints = get_type_hints(cls)
    rows = []
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        key = prefix + field.name
        default = _default(field)
        section = section_type(hints[field.name])
        if section is not None and default is not None:
            rows.extend(describe(section, f"{key}."))
            continue
        tp = hints[field.name]
        rows.append(KeyHelp(key, type_name(tp), _show(default), field.metadata.get("help", ""), tp))
    return rows


def _default(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None if field.default is dataclasses.MISSING else field.default


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, tuple):
        return str(list(value))
    return str(value)


def markdown(rows: list[KeyHelp]) -> str:
    """A markdown table of ``rows`` (key, type, default, help)."""
    lines = ["| key | type | default | help |", "|---|---|---|---|"]
    for row in rows:
        cells = [f"`{row.key}`", f"`{row.type}`", f"`{row.default}`", row.help]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def text(rows: list[KeyHelp]) -> str:
    """Plain-text listing of ``rows`` for a terminal: ``key: type = default`` then the help, indented."""
    return "\n".join(f"{row.key}: {row.type} = {row.default}\n    {row.help}" for row in rows)

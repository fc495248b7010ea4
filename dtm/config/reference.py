"""Every config kind by name, for ``dtm config show KIND`` and for docs/configs.md (generated from the same fields,
so the reference cannot drift from the code)."""

from __future__ import annotations

import dataclasses
import importlib
from typing import get_type_hints

from dtm.config.fields import KeyHelp, describe, markdown
from dtm.config.loader import section_type
from dtm.methods import METHODS, split_path

# kind -> (module, class, what reads it).
KINDS: dict[str, tuple[str, str, str]] = {
    "pretrain": ("dtm.config.pretrain", "PretrainConfig", "dtm pretrain"),
    "sft": ("dtm.config.sft", "SFTConfig", "dtm sft"),
    **{m.name: (*split_path(m.config), f"dtm train (method: {m.name})") for m in METHODS.values()},
    "eval": ("dtm.config.evaluation", "EvalConfig", "dtm eval"),
    "sample": ("dtm.config.commands", "SampleConfig", "dtm sample"),
    "demo": ("dtm.config.commands", "DemoConfig", "dtm demo"),
    "compare": ("dtm.config.studies.compare", "CompareConfig", "dtm study compare"),
    "fit": ("dtm.config.studies.fit", "FitStudyConfig", "dtm study fit"),
    "maze": ("dtm.config.studies.maze", "MazeStudyConfig", "dtm study maze"),
    "decoding": ("dtm.config.studies.decoding", "DecodingStudyConfig", "dtm study decoding"),
}


def config_class(kind: str) -> type:
    """The config class of ``kind``; an unknown kind is a ValueError listing the known ones."""
    if kind not in KINDS:
        raise ValueError(f"unknown config kind {kind!r}; available: {', '.join(KINDS)}")
    module, name, _ = KINDS[kind]
    return getattr(importlib.import_module(module), name)


def show(kind: str) -> list[KeyHelp]:
    """Every key of ``kind``'s config (sections expanded)."""
    return describe(config_class(kind))


def _method_rows(kind: str) -> list[KeyHelp]:
    """The keys a method adds to the shared training keys, or whose default it changes."""
    from dtm.config.run import RunConfig

    shared = {row.key: row for row in describe(RunConfig)}
    return [row for row in show(kind) if shared.get(row.key) != row and row.key != "method"]


def _doc(kind: str) -> str:
    cls = config_class(kind)
    return " ".join((cls.__doc__ or "").split())


def reference_markdown() -> str:
    """The text of docs/configs.md: every config key of every command, with type, default and help."""
    from dtm.config.run import RunConfig

    parts = [
        "# Config reference",
        "",
        "Generated from the config classes by `python -m dtm.config.reference > docs/configs.md` (a test fails "
        "when this file is stale). `dtm config show KIND` prints the same keys in a terminal. Set a key in the YAML "
        "file given with `--config`, or on the command line as `key=value` (`section.key=value` inside a section; "
        "values are YAML: `lr=1e-4`, `seeds=[0,1]`, `load.trust_remote_code=true`).",
        "",
        "Kinds: " + ", ".join(f"`{kind}` ({KINDS[kind][2]})" for kind in KINDS) + ".",
        "",
        "## Training: keys of every method (`dtm train`)",
        "",
        " ".join((RunConfig.__doc__ or "").split()),
        "",
        markdown(describe(RunConfig)),
    ]
    for kind in METHODS:
        parts += ["", f"## `method: {kind}`", "", METHODS[kind].summary + ".", "", _doc(kind), ""]
        parts += ["Adds, or changes the default of:", ""]
        parts.append(markdown(_method_rows(kind)))
    for kind in KINDS:
        if kind in METHODS:
            continue
        parts += ["", f"## `{kind}` ({KINDS[kind][2]})", "", _doc(kind), "", markdown(show(kind))]
    parts += ["", "## Renamed keys", "", "An old name is refused with the new one in the error.", ""]
    parts += ["| old key | new key | kinds |", "|---|---|---|"]
    renamed: dict[tuple[str, str], list[str]] = {}
    for kind in KINDS:
        for pair in _renames(config_class(kind)):
            renamed.setdefault(pair, []).append(f"`{kind}`")
    parts += [f"| `{old}` | `{new}` | {', '.join(kinds)} |" for (old, new), kinds in renamed.items()]
    return "\n".join(parts) + "\n"


def _renames(cls: type, prefix: str = "") -> list[tuple[str, str]]:
    """(old, new) dotted keys renamed in ``cls`` and its sections."""
    pairs = [(prefix + old, prefix + new) for old, new in getattr(cls, "renamed_keys", {}).items()]
    hints = get_type_hints(cls)
    for field in dataclasses.fields(cls):
        section = section_type(hints[field.name])
        if field.init and section is not None:
            pairs += _renames(section, f"{prefix}{field.name}.")
    return pairs


def missing_help() -> list[str]:
    """Keys of any kind without help text (a test keeps this empty)."""
    return sorted({f"{kind}: {row.key}" for kind in KINDS for row in show(kind) if not row.help.strip()})


if __name__ == "__main__":
    print(reference_markdown(), end="")

__all__ = ["KINDS", "config_class", "missing_help", "reference_markdown", "show"]

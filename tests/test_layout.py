"""The README's layout table matches the tree: every module and package of dtm/ and every script is named in it,
and every path it names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def layout_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]


def test_every_module_and_script_is_in_the_layout_table():
    section = layout_section()
    rows = {line.split("|")[1].strip() for line in section.splitlines() if line.startswith("| `")}
    named = set(re.findall(r"`([^`]+)`", section))
    for entry in sorted((ROOT / "dtm").iterdir()):
        if entry.name in ("__init__.py", "__pycache__"):
            continue
        path = f"dtm/{entry.name}" + ("/" if entry.is_dir() else "")
        assert any(f"`{path}`" in row for row in rows), f"README layout: no row for {path}"
    for script in sorted((ROOT / "scripts").iterdir()):
        if script.suffix in (".sh", ".py"):
            assert script.name in named, f"README layout: scripts/{script.name} is not named"


def test_every_path_of_the_layout_table_exists():
    for line in layout_section().splitlines():
        if line.startswith("| `"):
            for path in re.findall(r"`([^`]+)`", line.split("|")[1]):
                assert (ROOT / path).exists(), f"README layout names {path}, which does not exist"

"""Every results table in the README and docs/ is regenerated here from the run's own results.json (committed under
docs/), and every "mean ± std" quoted in their text must appear in one of those tables: a number that no longer comes
from its run fails."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from dtm.studies import compare, fit, maze

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _summary(path: Path) -> dict:
    return json.loads(path.read_text())["summary"]


def _fit_phases(summary: dict) -> str:
    return "\n\n".join(fit.phase_table(entry) for entry in summary.values())


# (document, results.json under docs/, the study's own table renderer)
TABLES: list[tuple[str, str, Callable[[dict], str]]] = [
    ("README.md", "maze-study/results.json", maze.markdown_table),
    ("README.md", "compare/maze/results.json", compare.markdown_tables),
    ("README.md", "compare/sudoku/results.json", compare.markdown_tables),
    ("README.md", "fit/maze/results.json", _fit_phases),
    ("docs/fit.md", "fit/levers/results.json", fit.variant_table),
    ("docs/fit.md", "fit/maze/results.json", _fit_phases),
]


def _rendered() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for doc, results, render in TABLES:
        out.setdefault(doc, []).append(render(_summary(DOCS / results)))
    return out


@pytest.mark.parametrize(("doc", "results", "render"), TABLES, ids=[f"{d}:{r}" for d, r, _ in TABLES])
def test_tables_are_regenerated_from_their_runs(doc, results, render):
    table = render(_summary(DOCS / results))
    assert table in (ROOT / doc).read_text(), f"{doc} does not hold the table of docs/{results} (stale or edited?)"


@pytest.mark.parametrize("doc", sorted({d for d, _, _ in TABLES}))
def test_every_quoted_mean_and_std_comes_from_a_table(doc):
    tables = "\n".join(_rendered()[doc])
    quoted = set(re.findall(r"-?\d+\.\d+ ± \d+\.\d+", (ROOT / doc).read_text()))
    missing = sorted(q for q in quoted if q not in tables)
    assert not missing, f"{doc} quotes numbers that no results table holds: {missing}"

"""The text Sudoku task against an independent scorer (reasoning-gym's mini_sudoku): the committed agreement record
(docs/sudoku-agreement/results.json, quoted in docs/tasks.md) is what scripts/sudoku_agreement.py gives today."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "docs" / "sudoku-agreement" / "results.json"


def _script():
    spec = importlib.util.spec_from_file_location("sudoku_agreement", ROOT / "scripts" / "sudoku_agreement.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_table_is_the_committed_record():
    table = _script().markdown_table(json.loads(RECORD.read_text()))
    assert table in (ROOT / "docs" / "tasks.md").read_text()


def test_every_kind_of_answer_is_judged_as_reasoning_gym_judges_it():
    pytest.importorskip("reasoning_gym")
    record = json.loads(RECORD.read_text())
    rerun = _script().agreement(record["puzzles"], record["seed"])
    assert rerun == record
    assert rerun["agree"] == rerun["answers"] == 6 * record["puzzles"]
    kinds = rerun["kinds"]
    assert kinds["correct"]["ours_correct"] == record["puzzles"]
    assert all(kinds[k]["ours_correct"] == 0 for k in kinds if k != "correct")
    assert all(row["formats_agree"] == row["answers"] for row in kinds.values())
    # An altered given keeps the paper's cell score, yet is not a solution.
    assert kinds["given_changed"]["ours_score"] == 1.0


def test_an_altered_given_is_a_wrong_answer_to_reasoning_gym_too():
    pytest.importorskip("reasoning_gym")
    from reasoning_gym.games.mini_sudoku import MiniSudokuConfig, MiniSudokuDataset

    from dtm.tasks.sudoku_grids import to_string
    from dtm.tasks.text import get_text_task

    dataset = MiniSudokuDataset(MiniSudokuConfig(seed=1, size=1))
    entry = dataset[0]
    puzzle = [v for row in entry["metadata"]["puzzle"] for v in row]
    solution = [v for row in entry["metadata"]["solution"] for v in row]
    given = next(i for i, v in enumerate(puzzle) if v)
    altered = solution[:]
    altered[given] = altered[given] % 4 + 1
    script, task = _script(), get_text_task("sudoku")
    example = task.make_example(to_string(puzzle), to_string(solution), "rg-1")
    digits = to_string(altered)
    assert dataset.score_answer(script.rg_format(digits), entry) < 1.0
    assert not task.is_correct(f"<answer>{digits}</answer>", example)
    assert task.is_correct(f"<answer>{to_string(solution)}</answer>", example)

"""Check the text Sudoku task's scoring against an independent scorer: reasoning-gym's ``mini_sudoku``.

For each of ``--puzzles`` reasoning-gym puzzles (its own generator, seed ``--seed``), answers of several kinds are
built from its solution, written once in our answer format (16 digits in an answer tag) and once in reasoning-gym's
(rows of space-separated digits), and scored by both:

* ``correct``: the solution;
* ``empty_cell_changed``: one empty cell's digit replaced (the grid breaks a rule);
* ``given_changed``: one given cell's digit replaced;
* ``row_swap``: two cells of one row swapped (rows stay valid, columns or boxes break);
* ``other_grid``: a different valid grid (every rule kept, some givens not);
* ``truncated``: the last digit missing.

Agreement is between our ``is_correct`` and reasoning-gym's verdict ``score_answer == 1.0`` (its exact-match score;
any other answer scores at most 0.9); ``formats_agree`` counts answers our ``is_correct`` judges the same in both
formats (our reader takes every digit of the answer tag in order). The partial scores differ by design and are
reported, not compared: ours counts the puzzle's empty cells only, reasoning-gym's all 16 cells (times 0.9 outside its
exact format).

    .venv/bin/python scripts/sudoku_agreement.py --out docs/sudoku-agreement/results.json

needs the ``real`` extra (reasoning-gym); the docs test re-derives docs/tasks.md's figures from the JSON, and
tests/test_sudoku_agreement.py reruns the check.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

from dtm.tasks.sudoku_grids import all_grids, to_string
from dtm.tasks.text import get_text_task

KINDS = ("correct", "empty_cell_changed", "given_changed", "row_swap", "other_grid", "truncated")


def answers(puzzle: list[int], solution: list[int], rng: random.Random) -> dict[str, str]:
    """One answer grid per kind (module docstring), as a digit string ("" cells are missing)."""
    empty = [i for i, v in enumerate(puzzle) if v == 0]
    given = [i for i, v in enumerate(puzzle) if v != 0]

    def changed(cells: list[int]) -> list[int]:
        grid, cell = solution[:], rng.choice(cells)
        grid[cell] = rng.choice([d for d in range(1, 5) if d != solution[cell]])
        return grid

    row = rng.randrange(4)
    a, b = rng.sample(range(4 * row, 4 * row + 4), 2)
    swapped = solution[:]
    swapped[a], swapped[b] = swapped[b], swapped[a]
    grids_out = {
        "correct": solution,
        "empty_cell_changed": changed(empty),
        "given_changed": changed(given),
        "row_swap": swapped,
        "other_grid": rng.choice([g for g in all_grids() if g != tuple(solution)]),
    }
    out = {kind: to_string(grid) for kind, grid in grids_out.items()}
    out["truncated"] = out["correct"][:-1]
    return out


def rg_format(digits: str) -> str:
    """reasoning-gym's answer format: rows of space-separated digits, one per line (a short last row if cut)."""
    return "\n".join(" ".join(digits[i : i + 4]) for i in range(0, len(digits), 4))


def agreement(puzzles: int, seed: int) -> dict[str, Any]:
    """Score every kind of answer to ``puzzles`` reasoning-gym puzzles with both scorers; per-kind counts."""
    from reasoning_gym.games.mini_sudoku import MiniSudokuConfig, MiniSudokuDataset

    dataset = MiniSudokuDataset(MiniSudokuConfig(seed=seed, size=puzzles))
    task = get_text_task("sudoku")
    rng = random.Random(seed)
    kinds = {
        kind: {
            "answers": 0,
            "ours_correct": 0,
            "rg_correct": 0,
            "agree": 0,
            "formats_agree": 0,
            "ours_score": 0.0,
            "rg_score": 0.0,
        }
        for kind in KINDS
    }
    for entry in dataset:
        puzzle = [v for row in entry["metadata"]["puzzle"] for v in row]
        solution = [v for row in entry["metadata"]["solution"] for v in row]
        example = task.make_example(to_string(puzzle), to_string(solution), f"rg-{entry['metadata']['source_index']}")
        for kind, digits in answers(puzzle, solution, rng).items():
            completion, rg_answer = f"<answer>\n{digits}\n</answer>", rg_format(digits)
            ours = task.is_correct(completion, example)
            ours_spaced = task.is_correct(f"<answer>\n{rg_answer}\n</answer>", example)
            rg_score = dataset.score_answer(rg_answer, entry)
            row = kinds[kind]
            row["answers"] += 1
            row["ours_correct"] += ours
            row["rg_correct"] += rg_score == 1.0
            row["agree"] += ours == (rg_score == 1.0)
            row["formats_agree"] += ours == ours_spaced
            row["ours_score"] += task.score(completion, example)
            row["rg_score"] += rg_score
    for row in kinds.values():
        row["ours_score"] = round(row["ours_score"] / row["answers"], 4)
        row["rg_score"] = round(row["rg_score"] / row["answers"], 4)
    total = sum(row["answers"] for row in kinds.values())
    agreed = sum(row["agree"] for row in kinds.values())
    return {"puzzles": puzzles, "seed": seed, "answers": total, "agree": agreed, "kinds": kinds}


def markdown_table(record: dict[str, Any]) -> str:
    """The per-kind table of docs/tasks.md."""
    lines = [
        "| answer | answers | correct (ours) | correct (r-g) | verdicts agree | ours, both formats | our score "
        "| r-g score |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind, row in record["kinds"].items():
        lines.append(
            f"| {kind} | {row['answers']} | {row['ours_correct']} | {row['rg_correct']} | {row['agree']} | "
            f"{row['formats_agree']} | "
            f"{row['ours_score']:.3f} | {row['rg_score']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--puzzles", type=int, default=500, help="reasoning-gym puzzles (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="reasoning-gym generator seed and answer seed")
    parser.add_argument("--out", type=Path, default=None, help="write the record here (JSON) as well as printing it")
    args = parser.parse_args()
    record = agreement(args.puzzles, args.seed)
    text = json.dumps(record, indent=1)
    print(markdown_table(record))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()

"""4x4 Sudoku as text: the puzzle is a 16-digit string (``0`` = empty), the answer the 16-digit solution.

Reward (the DTM paper's, arXiv 2604.18739), in [0, 2]: ``2.0 * correct / empty`` where ``empty`` is the number of empty
cells of the puzzle and ``correct`` the number of them whose digit in the answer equals the solution's. The answer is
read as the digits of the first complete ``<answer>...</answer>`` in order (other characters dropped, as d1/SPG do),
where every character that reads as a digit counts as one (:func:`dtm.tasks.text.extract.grid_digits`: full-width,
superscript, Arabic-Indic... digits are normalised, never dropped): its first 16 digits are the grid, and missing digits
count as wrong; given cells are not scored, so an answer that alters a given keeps the reward of its empty cells. No
answer tag: 0. ``score`` (the paper's cell-level accuracy) is ``correct / empty`` in [0, 1]. ``is_correct`` is what a
person checks: the answer is a solution of the puzzle (16 digits, every given kept, every row, column and box holding
1-4 once), so an altered given or a broken rule is never correct, whatever the reward.

Data. ``source="generate"`` (default): :func:`dtm.tasks.sudoku_grids.generate_puzzles`, puzzles with a unique solution
made from the solution grids of their split only, which partitions the 288 grids by a hash, so train and test are
answer-disjoint (see that module). Local files: JSONL/CSV with ``puzzle`` and ``solution`` (any case, so the d1/SPG
``Puzzle,Solution`` CSV files load as they are), optional ``id``; each record is checked (valid solution grid, givens
agree with it, at least one empty cell).

Prompts. Reasoning style: the rules, the answer format and (``few_shot``, default 3) worked examples, each a fixed
training puzzle with a step-by-step solution written by :func:`worked_solution`, then ``Question: Solve the following
Sudoku puzzle: <16 digits>\\nAnswer:``. Chat style: the puzzle and a request for the 16 digits in answer tags.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from dtm.tasks.sudoku_grids import (
    CELLS,
    DIGITS,
    UNITS,
    candidates,
    from_string,
    generate_puzzles,
    is_solution_grid,
    solve,
    to_string,
)
from dtm.tasks.text.base import TextExample, TextTask, as_example, get_field
from dtm.tasks.text.extract import answer_tag, grid_digits

MAX_REWARD = 2.0
# Three fixed puzzles whose solutions are training grids (a test checks this), used as worked examples.
FEW_SHOT_PUZZLES = ("2030401014200200", "3100020100202400", "0042240043000000")


def _cell_name(cell: int) -> str:
    return f"R{cell // 4 + 1}C{cell % 4 + 1}"


def _unit_name(index: int) -> str:
    kind = ("row", "column", "box")[index // 4]
    return f"{kind} {index % 4 + 1}"


def _rows(grid: Sequence[int]) -> list[str]:
    return [f"R{r + 1}: " + " ".join(str(v) for v in grid[4 * r : 4 * r + 4]) for r in range(4)]


def worked_solution(puzzle: Sequence[int]) -> tuple[str, str]:
    """A step-by-step solution of a uniquely solvable puzzle and its 16-digit answer.

    Each step fills one cell, by a naked single (the only digit its row, column and box allow) or a hidden single (the
    only cell of a row, column or box that can take a digit); the fallback, never needed for the built-in examples,
    names the digit of the unique solution.
    """
    solution = solve(puzzle)
    if solution is None:
        raise ValueError(f"puzzle {to_string(puzzle)} does not have a unique solution")
    cells = list(puzzle)
    steps = []
    while 0 in cells:
        step = None
        for cell in (c for c in range(CELLS) if cells[c] == 0):
            options = candidates(cells, cell)
            if len(options) == 1:
                held = ", ".join(str(d) for d in DIGITS if d != options[0])
                step = (cell, options[0], f"{_cell_name(cell)}: its row, column and box already hold {held}")
                break
        if step is None:
            for index, unit in enumerate(UNITS):
                for digit in DIGITS:
                    places = [c for c in unit if cells[c] == 0 and digit in candidates(cells, c)]
                    if len(places) == 1 and digit not in (cells[c] for c in unit):
                        why = f"{_unit_name(index)} needs {digit}; only {_cell_name(places[0])} can hold it"
                        step = (places[0], digit, why)
                        break
                if step is not None:
                    break
        if step is None:
            cell = cells.index(0)
            step = (cell, solution[cell], f"{_cell_name(cell)} = {solution[cell]} (the only completion)")
        cells[step[0]] = step[1]
        steps.append(f"{step[2]} -> {_cell_name(step[0])}={step[1]}.")
    lines = ["The puzzle as 4 rows of 4:", *_rows(puzzle), "", "Fill the cells one at a time:", *steps]
    lines += ["", "Final grid:", *_rows(cells)]
    return "\n".join(lines), to_string(cells)


def answer_digits(text: str) -> str | None:
    """The first 16 digits inside the first complete answer tag, as ASCII (possibly ``""``), or None without a tag."""
    content = answer_tag(text)
    if content is None:
        return None
    return grid_digits(content, CELLS)


def cell_accuracy(digits: str | None, puzzle: str, solution: str) -> float:
    """Fraction of the empty cells of ``puzzle`` whose digit in ``digits`` (first 16) matches ``solution``."""
    empty = [i for i in range(min(len(puzzle), CELLS)) if puzzle[i] == "0"]
    if digits is None or not empty:
        return 0.0
    correct = sum(1 for i in empty if i < len(digits) and i < len(solution) and digits[i] == solution[i])
    return correct / len(empty)


def solves(digits: str | None, puzzle: str) -> bool:
    """True iff ``digits`` (the answer's first 16) is a solution grid of ``puzzle``: complete, every given kept, every
    row, column and box holding 1-4 once."""
    if digits is None or len(digits) != CELLS:
        return False
    grid = [int(d) for d in digits]
    return is_solution_grid(grid) and all(g == "0" or int(g) == v for g, v in zip(puzzle, grid, strict=True))


class SudokuTextTask(TextTask):
    """4x4 Sudoku with text prompts (module docstring: data, prompts, reward and metric)."""

    name: ClassVar[str] = "sudoku"
    reward_range: ClassVar[tuple[float, float]] = (0.0, MAX_REWARD)
    default_source: ClassVar[str] = "generate"

    def __init__(
        self,
        style: str = "reasoning",
        source: str | None = None,
        instructions: str | None = None,
        system_message: bool = False,
        few_shot: int = 3,
        min_empty: int = 6,
        max_empty: int = 10,
    ) -> None:
        super().__init__(style, source, instructions, system_message)
        if not 0 <= few_shot <= len(FEW_SHOT_PUZZLES):
            raise ValueError(f"few_shot must be in [0, {len(FEW_SHOT_PUZZLES)}], got {few_shot}")
        self.few_shot = few_shot
        self.min_empty, self.max_empty = min_empty, max_empty

    # -------------------------------------------------------------------------------------------------- data

    @staticmethod
    def make_example(puzzle: str, solution: str, id: str) -> TextExample:
        return TextExample(id, puzzle, solution, {"puzzle": puzzle, "solution": solution})

    def from_record(self, record: Mapping[str, Any], where: str) -> TextExample:
        puzzle = str(get_field(record, ("puzzle", "quizzes", "question"), where)).strip()
        solution = str(get_field(record, ("solution", "solutions", "answer"), where)).strip()
        try:
            p, s = from_string(puzzle), from_string(solution)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        if not is_solution_grid(s):
            raise ValueError(f"{where}: solution {solution} is not a valid 4x4 Sudoku grid")
        if any(a != 0 and a != b for a, b in zip(p, s, strict=True)):
            raise ValueError(f"{where}: the givens of puzzle {puzzle} disagree with solution {solution}")
        if 0 not in p:
            raise ValueError(f"{where}: puzzle {puzzle} has no empty cell")
        return self.make_example(puzzle, solution, str(record.get("id", where)))

    def generate(self, n: int, split: str, seed: int) -> list[TextExample]:
        pairs = generate_puzzles(n, split, seed, self.min_empty, self.max_empty)
        return [
            self.make_example(to_string(p), to_string(s), f"sudoku-{split}-{seed}-{i}")
            for i, (p, s) in enumerate(pairs)
        ]

    # ----------------------------------------------------------------------------------------------- prompts

    def default_instructions(self) -> str:
        return (
            "Solve the following 4x4 Sudoku puzzle. The puzzle is a 16-character string read left to right, top to "
            "bottom, where '0' marks an empty cell.\n\n"
            "Rules:\n- Fill the empty cells with digits 1-4\n- Each row must contain the digits 1-4 exactly once\n"
            "- Each column must contain the digits 1-4 exactly once\n"
            "- Each 2x2 box must contain the digits 1-4 exactly once\n\n"
            "Important: your solution must be the COMPLETE grid as a 16-character string of digits 1-4.\n\n"
            "Respond in this exact format:\n<reasoning>\nYour step-by-step solving process\n</reasoning>\n"
            "<answer>\n[the 16-digit solution, with no spaces or separators]\n</answer>"
        )

    def few_shot_text(self) -> str:
        """The worked examples of the reasoning prompt (``few_shot`` of them)."""
        blocks = []
        for puzzle in FEW_SHOT_PUZZLES[: self.few_shot]:
            reasoning, answer = worked_solution(from_string(puzzle))
            blocks.append(
                f"Question:\nSolve the following Sudoku puzzle: {puzzle}\nAnswer:\n<reasoning>\n{reasoning}\n"
                f"</reasoning>\n<answer>\n{answer}\n</answer>"
            )
        return "\n\n".join(blocks)

    def reasoning_prompt(self, example: TextExample) -> str:
        question = f"Question: Solve the following Sudoku puzzle: {example.meta['puzzle']}\nAnswer:\n"
        shots = self.few_shot_text()
        return f"{shots}\n\n{question}" if shots else question

    def chat_prompt(self, example: TextExample) -> str:
        return (
            f"Solve this 4x4 Sudoku (2x2 boxes), given row by row as 16 digits with 0 for empty cells: "
            f"{example.meta['puzzle']}. Put the completed grid as 16 digits inside <answer></answer> tags."
        )

    # ------------------------------------------------------------------------------------------------ scoring

    def extract_answer(self, text: str) -> str | None:
        """The grid's digits from the first complete answer tag (possibly empty), or None without a tag."""
        return answer_digits(text)

    def score(self, completion: str, example: TextExample | Mapping[str, Any]) -> float:
        """Cell-level accuracy: correct empty cells / empty cells."""
        example = as_example(example)
        return cell_accuracy(self.extract_answer(completion), example.meta["puzzle"], example.meta["solution"])

    def reward(self, completion: str, example: TextExample | Mapping[str, Any]) -> float:
        return MAX_REWARD * self.score(completion, example)

    def is_correct(self, completion: str, example: TextExample | Mapping[str, Any]) -> bool:
        """The answer is a solution of the puzzle: a complete grid that keeps every given and breaks no row, column
        or box rule (the reward's cell count alone ignores the givens)."""
        return solves(self.extract_answer(completion), as_example(example).meta["puzzle"])

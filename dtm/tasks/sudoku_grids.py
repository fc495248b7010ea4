"""4x4 Sudoku (2x2 boxes): the 288 solution grids, a brute-force solution counter, the split rule and a generator.

Shared by the text task (:mod:`dtm.tasks.text.sudoku`, LLaDA-style prompts) and the built-in-vocabulary token task
(:mod:`dtm.tasks.sudoku`).

Grids. A grid is a tuple of 16 ints read row by row; ``0`` is an empty cell, ``1..4`` a digit. Its text form is the
16-character digit string (``"3214142323414132"``), the format of the d1/SPG Sudoku data. A *solution grid* has every
row, column and 2x2 box holding 1-4 once; there are exactly 288 of them (:func:`all_grids`).

Split rule (answer-disjoint). A solution grid belongs to ``test`` iff ``int(sha256("dtm-sudoku4x4:" + grid)[:8], 16)
% 100 < 30`` (about 30% of the grids: 84 of 288), else to ``train``. Puzzles are made from the grids of their split
only, so no test solution ever appears in training data, whatever the seed or the number of puzzles.

Puzzles. :func:`make_puzzle` empties cells of a solution grid in a random order, keeping each removal only if the
puzzle still has exactly one solution (checked by :func:`count_solutions`, plain backtracking), until ``num_empty``
cells are empty; :func:`generate_puzzles` draws grids uniformly from a split and ``num_empty`` uniformly from
``[min_empty, max_empty]``, deterministically in ``(split, seed)``. Every 4x4 grid admits unique puzzles with up to 12
empty cells (4 givens), but a greedy removal order can get stuck earlier; then a new order is tried (a few times) and
the emptiest unique puzzle found is kept, so ``num_empty`` is a target, reached in practice for targets up to 10.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Sequence

SIZE = 4
CELLS = SIZE * SIZE
DIGITS = (1, 2, 3, 4)
SPLITS = ("train", "test")
TEST_PERCENT = 30

Grid = tuple[int, ...]


def _peers(cell: int) -> tuple[int, ...]:
    row, col = divmod(cell, SIZE)
    box_row, box_col = row // 2 * 2, col // 2 * 2
    same = {row * SIZE + c for c in range(SIZE)} | {r * SIZE + col for r in range(SIZE)}
    same |= {(box_row + r) * SIZE + box_col + c for r in range(2) for c in range(2)}
    return tuple(sorted(same - {cell}))


PEERS: tuple[tuple[int, ...], ...] = tuple(_peers(cell) for cell in range(CELLS))
UNITS: tuple[tuple[int, ...], ...] = (
    tuple(tuple(r * SIZE + c for c in range(SIZE)) for r in range(SIZE))
    + tuple(tuple(r * SIZE + c for r in range(SIZE)) for c in range(SIZE))
    + tuple(tuple((br + r) * SIZE + bc + c for r in range(2) for c in range(2)) for br in (0, 2) for bc in (0, 2))
)


def to_string(grid: Sequence[int]) -> str:
    """The 16-digit text form (``0`` for an empty cell)."""
    return "".join(str(int(v)) for v in grid)


def from_string(text: str) -> Grid:
    """Parse a 16-character string of ASCII digits 0-4; raise ValueError otherwise."""
    if len(text) != CELLS or any(ch not in "01234" for ch in text):
        raise ValueError(f"a 4x4 Sudoku grid is 16 digits 0-4, got {text!r}")
    return tuple(int(ch) for ch in text)


def is_solution_grid(grid: Sequence[int]) -> bool:
    """True iff ``grid`` is complete and every row, column and box holds 1-4 once."""
    if len(grid) != CELLS or any(v not in DIGITS for v in grid):
        return False
    return all(sorted(grid[i] for i in unit) == list(DIGITS) for unit in UNITS)


def consistent(puzzle: Sequence[int]) -> bool:
    """True iff no two filled cells of one row, column or box hold the same digit (and all values are 0-4)."""
    if len(puzzle) != CELLS or any(v not in (0, *DIGITS) for v in puzzle):
        return False
    return all(puzzle[c] == 0 or all(puzzle[p] != puzzle[c] for p in PEERS[c]) for c in range(CELLS))


def candidates(puzzle: Sequence[int], cell: int) -> list[int]:
    """Digits that ``cell`` may hold given its filled peers."""
    used = {puzzle[p] for p in PEERS[cell]}
    return [d for d in DIGITS if d not in used]


def count_solutions(puzzle: Sequence[int], limit: int = 2) -> int:
    """Number of solution grids completing ``puzzle`` (brute-force backtracking), stopping once ``limit`` are found."""
    if not consistent(puzzle):
        return 0
    cells = list(puzzle)

    def search() -> int:
        try:
            cell = cells.index(0)
        except ValueError:
            return 1
        found = 0
        for digit in candidates(cells, cell):
            cells[cell] = digit
            found += search()
            cells[cell] = 0
            if found >= limit:
                break
        return found

    return search()


def solve(puzzle: Sequence[int]) -> Grid | None:
    """The unique solution of ``puzzle``, or None if it has none or several."""
    if count_solutions(puzzle, limit=2) != 1:
        return None
    cells = list(puzzle)
    while 0 in cells:  # a unique solution exists: fill cells one by one with the digit that keeps it solvable
        cell = cells.index(0)
        for digit in candidates(cells, cell):
            cells[cell] = digit
            if count_solutions(cells, limit=1):
                break
    return tuple(cells)


@functools.cache
def all_grids() -> tuple[Grid, ...]:
    """All 288 4x4 solution grids, in lexicographic order."""
    out: list[Grid] = []
    cells = [0] * CELLS

    def fill(cell: int) -> None:
        if cell == CELLS:
            out.append(tuple(cells))
            return
        for digit in candidates(cells, cell):
            cells[cell] = digit
            fill(cell + 1)
        cells[cell] = 0

    fill(0)
    return tuple(out)


def grid_split(grid: Sequence[int]) -> str:
    """``"test"`` or ``"train"`` for a solution grid, by the hash rule of the module docstring."""
    digest = hashlib.sha256(("dtm-sudoku4x4:" + to_string(grid)).encode()).hexdigest()
    return "test" if int(digest[:8], 16) % 100 < TEST_PERCENT else "train"


@functools.cache
def split_grids(split: str) -> tuple[Grid, ...]:
    """The solution grids of one split (train and test partition the 288 grids)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    return tuple(g for g in all_grids() if grid_split(g) == split)


def make_puzzle(solution: Sequence[int], num_empty: int, rng: random.Random, attempts: int = 8) -> Grid:
    """A puzzle with a unique solution ``solution`` and (up to) ``num_empty`` empty cells (see module docstring)."""
    if not is_solution_grid(solution):
        raise ValueError(f"not a 4x4 solution grid: {to_string(solution)!r}")
    if not 0 <= num_empty <= CELLS - 4:
        raise ValueError(f"num_empty must be in [0, 12] for a unique 4x4 puzzle, got {num_empty}")
    best = tuple(solution)
    for _ in range(attempts):
        puzzle = list(solution)
        empty = 0
        order = list(range(CELLS))
        rng.shuffle(order)
        for cell in order:
            if empty == num_empty:
                break
            puzzle[cell] = 0
            if count_solutions(puzzle, limit=2) == 1:
                empty += 1
            else:
                puzzle[cell] = solution[cell]
        if empty > best.count(0):
            best = tuple(puzzle)
        if empty == num_empty:
            break
    return best


def generate_puzzles(
    n: int, split: str = "train", seed: int = 0, min_empty: int = 6, max_empty: int = 10
) -> list[tuple[Grid, Grid]]:
    """``n`` (puzzle, solution) pairs from the grids of ``split``; deterministic in ``(split, seed)``.

    The first ``k`` pairs of a call are the ``k`` pairs of a call with ``n = k`` (same seed and split).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0 <= min_empty <= max_empty <= CELLS - 4:
        raise ValueError(f"need 0 <= min_empty <= max_empty <= 12, got {min_empty}, {max_empty}")
    grids = split_grids(split)
    rng = random.Random(f"dtm-sudoku4x4:{split}:{seed}")
    out = []
    for _ in range(n):
        solution = grids[rng.randrange(len(grids))]
        out.append((make_puzzle(solution, rng.randint(min_empty, max_empty), rng), solution))
    return out

"""A synthetic maze-planning task with several shortest paths per maze, to measure reward and mode collapse.

Mazes. A ``size x size`` grid of cells (default 4 x 4), numbered row-major from the top-left corner (cell
``row * size + col``), with walls between adjacent cells. A maze is a uniform random spanning tree of the grid
(Wilson's algorithm: a *perfect* maze) plus ``extra_openings`` further walls (default 5 of the 9 left in a 4 x 4
maze) removed uniformly at random among the remaining inner walls, so it has loops (``size**2 - 1 + extra_openings``
open passages). The start cell is uniform; the goal is uniform among the cells whose BFS distance from the start is at
least ``min_distance`` (default ``size``) and at most ``gen_length``, that are joined to the start by at least
``min_shortest_paths`` (default 2) distinct shortest paths and by at least one longer simple path within
``gen_length`` moves; a start with no such goal draws a new maze. Mode collapse is therefore measurable: every maze
has several equally good answers.

Splits. A maze (walls, start and goal) belongs to the split given by the parity of the first byte of the SHA-256 of its
canonical description (:meth:`Maze.key`): even -> ``train``, odd -> ``test``. ``prompts(n, split, seed)`` draws mazes
from a ``random.Random`` seeded by ``(split, seed)`` and keeps those of its split, so train and test mazes are disjoint
by construction and a call is deterministic (and the first ``k`` of ``n`` prompts are the ``k`` prompts of that seed).
Mazes may repeat inside one split.

Tokens. ``PAD=0, MASK=1, SEP=2, EOS=3``; the markers ``START=4`` and ``GOAL=5``; 16 wall-pattern tokens
``WALL0 + open = 6 + open`` where ``open`` is the 4-bit mask of a cell's open sides (bit ``m`` for move ``m``: U=1,
D=2, L=4, R=8; up = row - 1, down = row + 1, left = col - 1, right = col + 1); and ``size**2`` cell-id tokens
``CELL0 + cell = 22 + cell``. So ``vocab_size = 22 + size**2`` (38 for 4 x 4, :func:`vocab_size_for`). Moves have no
tokens: move strings (``"RRDL"``) stay the canonical text form of a path (enumeration, distributions, metrics).

* Prompt: for every cell in row-major order the pair ``[cell id, wall pattern]``, then
  ``[START, start id, GOAL, goal id, SEP]``: ``2 * size**2 + 5`` tokens (37 for 4 x 4, no padding).
* Response: the ids of the cells the path visits after the start, the last one the goal (a path of ``L`` moves is
  ``L`` cell tokens), then ``EOS`` up to ``gen_length`` (default: the smallest multiple of 4 that holds every simple
  path, ``size**2 - 1`` moves: 16 for 4 x 4, so the budget never cuts a simple path there).

A cell id is the same token in the prompt and in the response, so checking a step is local and content-addressable:
the walls of the current cell sit right after its id in the prompt, and the next cell must be one of its grid
neighbours through an open side.

Validity. A response is valid iff its tokens up to the first ``EOS`` (all of them if there is none) are cell ids,
every token after the first ``EOS`` is ``EOS``, each cell (the first one compared with the start) is a grid neighbour
of the previous one with an open side between them, no cell is visited twice (the start counts as visited) and the
last cell is the goal. Paths are required to be *simple* (no revisits) so that the valid responses are exactly the
simple start -> goal paths of at most ``gen_length`` moves: :func:`enumerate_valid_paths` lists the whole support of
the reward, which makes exact tilted targets computable. (A simple path cannot pass through the goal and come back.)

Reward, in [0, 1]: 0 for an invalid response, ``shortest_length / path_length`` for a valid one (1 exactly for a
shortest path, strictly between 0 and 1 for a longer one). ``is_correct``: valid and of shortest length.

Demonstrations (pretraining data of the base model), a mixture, independently per prompt:

* with probability ``p_shortest_demo`` (default 0.1): a uniformly random shortest path;
* otherwise a random self-avoiding walk from the start that stops on reaching the goal: each step moves to an
  unvisited open neighbour ``v`` with probability proportional to ``exp(-goal_bias * d(v))`` (``d``: BFS distance to
  the goal; the default ``goal_bias=0`` is uniform). A walk that gets stuck (no unvisited neighbour), uses up
  ``gen_length`` moves without reaching the goal, or reaches it by a *shortest* path is discarded and a new walk starts
  from the start (rejection). Every maze has at least one valid longer path (checked when it is drawn).

So the base rate of shortest paths is exactly ``p_shortest_demo``, uniform over the shortest paths, and a longer path
``x`` has probability ``(1 - p_shortest_demo) q(x) / Z`` with ``q(x)`` the product of its step probabilities and ``Z``
the sum of ``q`` over the longer paths of :func:`enumerate_valid_paths`. :meth:`MazeTask.demo_distribution` returns
this mixture exactly and :meth:`MazeTask.tilted_distribution` the tilted target ``rho_a ∝ p_demo · exp(a r)`` over the
valid responses; as ``a -> inf`` it tends to the uniform distribution over the shortest paths, so a tuned model that
puts most of its shortest-path mass on one of them has collapsed (compare the entropy over shortest paths with
``log num_shortest_paths``).

Typical defaults (4 x 4, ``extra_openings=5``, 2000 train mazes): 2-7 shortest paths per maze (mean 3.3; 35% have 2,
31% 3, 18% 4), shortest length 4-9 moves (mean 4.6), 16.7 valid paths per maze on average (max 28); demonstrations
are always valid, 10% shortest, 7.9 moves long on average, mean reward 0.62, and the most likely path of a maze has
probability 0.2 on average.

Helpers: :func:`shortest_distance`, :func:`count_shortest_paths` (BFS layer DP), :func:`enumerate_shortest_paths`,
:func:`enumerate_valid_paths` (DFS with a distance bound), :func:`path_key` (a hashable path for diversity metrics),
:func:`moves_to_response` / :func:`response_moves` (move string <-> response tokens), :func:`encode_prompt` /
:func:`decode_prompt`, :func:`render_tokens` / :func:`parse_render` and :func:`draw`. Functions taking a ``maze``
accept a :class:`Maze` or a prompt's ``meta`` dict.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from dtm.tasks.base import PromptBatch

PAD, MASK, SEP, EOS = 0, 1, 2, 3
START, GOAL = 4, 5
NUM_PATTERNS = 16
WALL0 = 6
CELL0 = WALL0 + NUM_PATTERNS
MOVES = "UDLR"
UP, DOWN, LEFT, RIGHT = 0, 1, 2, 3
OPPOSITE = (DOWN, UP, RIGHT, LEFT)
SPLIT_PARITY = {"train": 0, "test": 1}
_SPECIAL_TEXT = {PAD: "_", MASK: "?", SEP: "|", EOS: ".", START: "S", GOAL: "G"}


def vocab_size_for(size: int) -> int:
    """Vocabulary of a ``size x size`` maze: special tokens, markers, wall patterns and ``size**2`` cell ids."""
    return CELL0 + size * size


def prompt_length_for(size: int) -> int:
    """``[cell id, wall pattern]`` per cell, then ``START, start, GOAL, goal, SEP``."""
    return 2 * size * size + 5


@dataclass(frozen=True)
class Maze:
    """Open sides per cell (bit ``m`` set: move ``m`` leaves the cell through an opening), start and goal cells."""

    size: int
    open: tuple[int, ...]
    start: int
    goal: int

    @property
    def num_cells(self) -> int:
        return self.size * self.size

    def step(self, cell: int, move: int) -> int | None:
        """The cell reached by ``move`` from ``cell``, or None if a wall (or the grid's border) is in the way."""
        if not self.open[cell] >> move & 1:
            return None
        return cell + (-self.size, self.size, -1, 1)[move]

    def neighbours(self, cell: int) -> list[tuple[int, int]]:
        """``(move, next cell)`` for each open side of ``cell``, in move order U, D, L, R."""
        return [(m, cell + (-self.size, self.size, -1, 1)[m]) for m in range(4) if self.open[cell] >> m & 1]

    @property
    def num_edges(self) -> int:
        """Number of open passages between cells."""
        return sum(bin(o).count("1") for o in self.open) // 2

    def key(self) -> str:
        """Canonical description; its hash decides the split."""
        return f"{self.size}|{','.join(map(str, self.open))}|{self.start}|{self.goal}"

    def digest(self) -> str:
        return hashlib.sha256(self.key().encode()).hexdigest()

    def split(self) -> str:
        return "test" if int(self.digest()[:2], 16) % 2 else "train"

    def check(self) -> None:
        """Raise ValueError unless the walls are consistent (symmetric, closed border) and start != goal are cells."""
        n, s = self.num_cells, self.size
        if s < 2 or len(self.open) != n:
            raise ValueError(f"a {s}x{s} maze needs {n} cells (size >= 2), got {len(self.open)}")
        for cell, o in enumerate(self.open):
            if not 0 <= o < NUM_PATTERNS:
                raise ValueError(f"cell {cell}: open mask {o} is not in [0, 16)")
            row, col = divmod(cell, s)
            inside = (row > 0, row < s - 1, col > 0, col < s - 1)
            for m in range(4):
                if o >> m & 1:
                    if not inside[m]:
                        raise ValueError(f"cell {cell}: side {MOVES[m]} opens onto the border")
                    other = cell + (-s, s, -1, 1)[m]
                    if not self.open[other] >> OPPOSITE[m] & 1:
                        raise ValueError(f"cells {cell} and {other} disagree about their wall")
        if not (0 <= self.start < n and 0 <= self.goal < n) or self.start == self.goal:
            raise ValueError(f"start {self.start} and goal {self.goal} must be two different cells of [0, {n})")

    def to_meta(self) -> dict[str, Any]:
        return {"size": self.size, "open": list(self.open), "start": self.start, "goal": self.goal}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> Maze:
        return cls(int(meta["size"]), tuple(int(o) for o in meta["open"]), int(meta["start"]), int(meta["goal"]))


def as_maze(maze: Maze | Mapping[str, Any]) -> Maze:
    return maze if isinstance(maze, Maze) else Maze.from_meta(maze)


# ------------------------------------------------------------------------------------------------ graph search


def _shortest(meta: Mapping[str, Any]) -> int:
    return int(meta["shortest_length"]) if "shortest_length" in meta else shortest_distance(meta)


def bfs(maze: Maze | Mapping[str, Any], source: int) -> tuple[list[int], list[int]]:
    """BFS from ``source``: (distance, number of distinct shortest paths) per cell; distance -1 and 0 paths if
    unreachable. Counts are accumulated layer by layer: count(v) = sum of count(u) over neighbours u one layer up."""
    maze = as_maze(maze)
    dist = [-1] * maze.num_cells
    count = [0] * maze.num_cells
    dist[source], count[source] = 0, 1
    queue = deque([source])
    while queue:
        u = queue.popleft()
        for _, v in maze.neighbours(u):
            if dist[v] < 0:
                dist[v] = dist[u] + 1
                queue.append(v)
            if dist[v] == dist[u] + 1:
                count[v] += count[u]
    return dist, count


def shortest_distance(maze: Maze | Mapping[str, Any]) -> int:
    """Number of moves of a shortest start -> goal path (-1 if the goal is unreachable)."""
    maze = as_maze(maze)
    return bfs(maze, maze.start)[0][maze.goal]


def count_shortest_paths(maze: Maze | Mapping[str, Any]) -> int:
    """Number of distinct shortest start -> goal move sequences."""
    maze = as_maze(maze)
    return bfs(maze, maze.start)[1][maze.goal]


def enumerate_shortest_paths(maze: Maze | Mapping[str, Any]) -> list[str]:
    """All distinct shortest start -> goal paths as move strings (e.g. ``"RRDD"``), sorted."""
    maze = as_maze(maze)
    to_goal = bfs(maze, maze.goal)[0]
    if to_goal[maze.start] < 0:
        return []
    paths: list[str] = []

    def extend(cell: int, prefix: str) -> None:
        if cell == maze.goal:
            paths.append(prefix)
            return
        for m, v in maze.neighbours(cell):
            if to_goal[v] == to_goal[cell] - 1:
                extend(v, prefix + MOVES[m])

    extend(maze.start, "")
    return sorted(paths)


def enumerate_valid_paths(maze: Maze | Mapping[str, Any], max_len: int | None = None) -> list[str]:
    """All simple start -> goal paths (no cell visited twice) of at most ``max_len`` moves (default: no limit), as
    sorted move strings: exactly the valid responses when ``max_len`` is the task's ``gen_length``. Depth-first search,
    pruned by the BFS distance to the goal (a lower bound on the remaining moves)."""
    maze = as_maze(maze)
    budget = maze.num_cells - 1 if max_len is None else max_len
    to_goal = bfs(maze, maze.goal)[0]
    paths: list[str] = []
    visited = [False] * maze.num_cells
    moves: list[str] = []

    def extend(cell: int) -> None:
        if cell == maze.goal:
            paths.append("".join(moves))
            return
        for m, v in maze.neighbours(cell):
            if not visited[v] and len(moves) + 1 + to_goal[v] <= budget:
                visited[v] = True
                moves.append(MOVES[m])
                extend(v)
                moves.pop()
                visited[v] = False

    if 0 <= to_goal[maze.start] <= budget:
        visited[maze.start] = True
        extend(maze.start)
    return sorted(paths)


def has_longer_path(maze: Maze | Mapping[str, Any], length: int, max_len: int) -> bool:
    """Whether a simple start -> goal path of more than ``length`` and at most ``max_len`` moves exists (DFS that
    stops at the first one)."""
    maze = as_maze(maze)
    to_goal = bfs(maze, maze.goal)[0]
    visited = [False] * maze.num_cells

    def search(cell: int, used: int) -> bool:
        if cell == maze.goal:
            return used > length
        visited[cell] = True
        found = any(
            not visited[v] and used + 1 + to_goal[v] <= max_len and search(v, used + 1)
            for _, v in maze.neighbours(cell)
        )
        visited[cell] = False
        return found

    return to_goal[maze.start] >= 0 and search(maze.start, 0)


def follow(maze: Maze | Mapping[str, Any], moves: str) -> list[int] | None:
    """Cells visited by the move string from the start (start included), or None if a move hits a wall/border or
    a character is not a move."""
    maze = as_maze(maze)
    cells = [maze.start]
    for ch in moves:
        m = MOVES.find(ch)
        nxt = maze.step(cells[-1], m) if m >= 0 else None
        if nxt is None:
            return None
        cells.append(nxt)
    return cells


def is_valid_path(maze: Maze | Mapping[str, Any], moves: str, max_len: int | None = None) -> bool:
    """A simple path from the start that ends at the goal, within ``max_len`` moves if given."""
    maze = as_maze(maze)
    cells = follow(maze, moves)
    return (
        cells is not None
        and cells[-1] == maze.goal
        and len(set(cells)) == len(cells)
        and (max_len is None or len(moves) <= max_len)
    )


# --------------------------------------------------------------------------------------------- token encoding


def _tokens(row: Sequence[int] | torch.Tensor) -> list[int]:
    return row.tolist() if isinstance(row, torch.Tensor) else [int(t) for t in row]


def _grid_move(size: int, a: int, b: int) -> str | None:
    """The move from cell ``a`` to cell ``b`` (both in the grid) if they are grid neighbours, else None (walls are
    not looked at)."""
    (ra, ca), (rb, cb) = divmod(a, size), divmod(b, size)
    return {(-1, 0): "U", (1, 0): "D", (0, -1): "L", (0, 1): "R"}.get((rb - ra, cb - ca))


def response_cells(row: Sequence[int] | torch.Tensor, size: int) -> list[int] | None:
    """The cells of a well-formed response of a ``size x size`` maze (cell ids, then only EOS), or None."""
    tokens = _tokens(row)
    end = tokens.index(EOS) if EOS in tokens else len(tokens)
    last = CELL0 + size * size
    if any(t != EOS for t in tokens[end:]) or not all(CELL0 <= t < last for t in tokens[:end]):
        return None
    return [t - CELL0 for t in tokens[:end]]


def response_moves(row: Sequence[int] | torch.Tensor, maze: Maze | Mapping[str, Any]) -> str | None:
    """The move string of a response (from the maze's start), or None if it is malformed (a token before the first
    EOS that is not a cell id, a non-EOS token after it) or a step is not between grid neighbours. Walls, revisits
    and the goal are not checked: :func:`is_valid_path` does that on the move string."""
    maze = as_maze(maze)
    cells = response_cells(row, maze.size)
    if cells is None:
        return None
    moves = []
    for a, b in zip([maze.start, *cells], cells, strict=False):
        move = _grid_move(maze.size, a, b)
        if move is None:
            return None
        moves.append(move)
    return "".join(moves)


def path_key(row: Sequence[int] | torch.Tensor, maze: Maze | Mapping[str, Any] | None = None) -> str:
    """A hashable key of the path a response describes, for diversity metrics. With the maze, a valid response's key
    is its move string (e.g. ``"RDRD"``, the keys of :meth:`MazeTask.demo_distribution`); otherwise (no maze, or an
    invalid response) it is the rendering of the tokens up to the first EOS (e.g. ``"1 5 6 10"``), which is also
    one key per path within a maze."""
    tokens = _tokens(row)
    size = None
    if maze is not None:
        maze = as_maze(maze)
        size = maze.size
        moves = response_moves(tokens, maze)
        if moves is not None and is_valid_path(maze, moves):
            return moves
    end = tokens.index(EOS) if EOS in tokens else len(tokens)
    return render_tokens(tokens[:end], size)


def moves_to_response(maze: Maze | Mapping[str, Any], moves: str, gen_length: int) -> list[int]:
    """Token ids of a move string from the maze's start: the cell ids it visits (walls are ignored, so wall crossings
    can be encoded), padded with EOS to ``gen_length``. Raises ValueError if a move leaves the grid or the path does
    not fit."""
    maze = as_maze(maze)
    if len(moves) > gen_length:
        raise ValueError(f"{len(moves)} moves do not fit in gen_length {gen_length}")
    s, cell, ids = maze.size, maze.start, []
    for ch in moves:
        m = MOVES.find(ch)
        row, col = divmod(cell, s)
        if m < 0 or not (row > 0, row < s - 1, col > 0, col < s - 1)[m]:
            raise ValueError(f"move {ch!r} from cell {cell} does not stay in the {s}x{s} grid")
        cell += (-s, s, -1, 1)[m]
        ids.append(CELL0 + cell)
    return ids + [EOS] * (gen_length - len(moves))


def encode_prompt(maze: Maze | Mapping[str, Any]) -> list[int]:
    """``[cell id, wall pattern]`` per cell in row-major order, then ``START, start id, GOAL, goal id, SEP``."""
    maze = as_maze(maze)
    ids = [t for cell, o in enumerate(maze.open) for t in (CELL0 + cell, WALL0 + o)]
    return [*ids, START, CELL0 + maze.start, GOAL, CELL0 + maze.goal, SEP]


def decode_prompt(ids: Sequence[int] | torch.Tensor) -> Maze:
    """Inverse of :func:`encode_prompt` (leading PAD tokens are ignored); raises ValueError on a malformed prompt."""
    tokens = _tokens(ids)
    while tokens and tokens[0] == PAD:
        tokens.pop(0)
    if not tokens or tokens[-1] != SEP:
        raise ValueError("a maze prompt ends with SEP")
    size = math.isqrt(max(len(tokens) - 5, 0) // 2)
    n = size * size
    if len(tokens) != prompt_length_for(size) or size < 2:
        raise ValueError(f"a maze prompt is 2 * size**2 + 5 tokens (size >= 2), got {len(tokens)}")
    if tokens[: 2 * n : 2] != [CELL0 + cell for cell in range(n)]:
        raise ValueError("a maze prompt lists the cell ids in row-major order, each followed by its wall pattern")
    walls = tokens[1 : 2 * n : 2]
    if not all(WALL0 <= t < WALL0 + NUM_PATTERNS for t in walls):
        raise ValueError("a maze prompt has a wall-pattern token after every cell id")
    marker, start, goal_marker, goal = tokens[2 * n : 2 * n + 4]
    if marker != START or goal_marker != GOAL or not (CELL0 <= start < CELL0 + n and CELL0 <= goal < CELL0 + n):
        raise ValueError("a maze prompt ends with START, start cell id, GOAL, goal cell id, SEP")
    maze = Maze(size, tuple(t - WALL0 for t in walls), start - CELL0, goal - CELL0)
    maze.check()
    return maze


def _wall_text(o: int) -> str:
    return "".join(ch for m, ch in enumerate(MOVES) if o >> m & 1) or "-"


def render_tokens(ids: Sequence[int], size: int | None = None) -> str:
    """Space-separated words: ``_ ? | . S G`` for PAD, MASK, SEP, EOS, START, GOAL; a wall pattern as its open sides
    (``"DR"``, ``"-"`` for none); a cell id as the cell's number; any other id as ``<id>`` (with ``size``, ids past
    the ``size**2`` cells too; without it every id from ``CELL0`` on reads as a cell). :func:`parse_render` inverts
    it."""
    last = None if size is None else CELL0 + size * size
    out = []
    for t in (int(i) for i in ids):
        if t in _SPECIAL_TEXT:
            out.append(_SPECIAL_TEXT[t])
        elif WALL0 <= t < CELL0:
            out.append(_wall_text(t - WALL0))
        elif t >= CELL0 and (last is None or t < last):
            out.append(str(t - CELL0))
        else:
            out.append(f"<{t}>")
    return " ".join(out)


def parse_render(text: str) -> list[int]:
    """Token ids of a :func:`render_tokens` string; raises ValueError on a word it cannot have written."""
    special = {v: k for k, v in _SPECIAL_TEXT.items()}
    walls = {_wall_text(o): WALL0 + o for o in range(NUM_PATTERNS)}
    ids: list[int] = []
    for word in text.split():
        if word in special:
            ids.append(special[word])
        elif word in walls:
            ids.append(walls[word])
        elif word.isdigit():
            ids.append(CELL0 + int(word))
        elif word.startswith("<") and word.endswith(">"):
            ids.append(int(word[1:-1]))
        else:
            raise ValueError(f"not a rendered maze token: {word!r}")
    return ids


def draw(maze: Maze | Mapping[str, Any], moves: str = "") -> str:
    """ASCII picture of the maze (``S`` start, ``G`` goal, ``*`` cells on the path given by ``moves``)."""
    maze = as_maze(maze)
    s = maze.size
    on_path = set(follow(maze, moves) or []) if moves else set()
    lines = ["+" + "---+" * s]
    for row in range(s):
        mid, bottom = "|", "+"
        for col in range(s):
            cell = row * s + col
            mark = "S" if cell == maze.start else "G" if cell == maze.goal else "*" if cell in on_path else " "
            mid += f" {mark} " + (" " if maze.open[cell] >> RIGHT & 1 else "|")
            bottom += ("   " if maze.open[cell] >> DOWN & 1 else "---") + "+"
        lines += [mid, bottom]
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------------- generation


def _grid_neighbours(size: int) -> list[list[tuple[int, int]]]:
    out = []
    for cell in range(size * size):
        row, col = divmod(cell, size)
        inside = (row > 0, row < size - 1, col > 0, col < size - 1)
        out.append([(m, cell + (-size, size, -1, 1)[m]) for m in range(4) if inside[m]])
    return out


def random_walls(size: int, extra_openings: int, rng: random.Random) -> list[int]:
    """Open masks of a uniform spanning tree of the grid (Wilson's algorithm) with ``extra_openings`` more walls
    removed uniformly among the remaining inner walls."""
    n = size * size
    grid = _grid_neighbours(size)
    open_ = [0] * n
    in_tree = [False] * n
    in_tree[rng.randrange(n)] = True
    exit_move = [0] * n
    for first in range(n):
        cell = first
        while not in_tree[cell]:  # random walk until the tree; the last exit from each cell erases loops
            m, nxt = grid[cell][rng.randrange(len(grid[cell]))]
            exit_move[cell] = m
            cell = nxt
        cell = first
        while not in_tree[cell]:
            in_tree[cell] = True
            m = exit_move[cell]
            nxt = cell + (-size, size, -1, 1)[m]
            open_[cell] |= 1 << m
            open_[nxt] |= 1 << OPPOSITE[m]
            cell = nxt
    closed = [(c, m) for c in range(n) for m, _ in grid[c] if m in (DOWN, RIGHT) and not open_[c] >> m & 1]
    for c, m in rng.sample(closed, extra_openings):
        open_[c] |= 1 << m
        open_[c + (size if m == DOWN else 1)] |= 1 << OPPOSITE[m]
    return open_


class MazeTask:
    """Find a path through a ``size x size`` maze with loops; reward ``shortest / length`` (see the module doc)."""

    name = "maze"
    mask_token_id = MASK

    def __init__(
        self,
        size: int = 4,
        extra_openings: int = 5,
        min_distance: int | None = None,
        min_shortest_paths: int = 2,
        gen_length: int | None = None,
        p_shortest_demo: float = 0.1,
        goal_bias: float = 0.0,
        max_walk_tries: int = 100_000,
    ) -> None:
        if size < 2:
            raise ValueError(f"size must be >= 2, got {size}")
        max_extra = (size - 1) ** 2  # inner walls 2 s (s - 1) minus the s**2 - 1 tree passages
        if not 0 <= extra_openings <= max_extra:
            raise ValueError(f"extra_openings must be in [0, {max_extra}] for size {size}, got {extra_openings}")
        self.size = size
        self.extra_openings = extra_openings
        self.min_distance = size if min_distance is None else min_distance
        self.min_shortest_paths = min_shortest_paths
        self.gen_length = 4 * math.ceil((size * size - 1) / 4) if gen_length is None else gen_length
        if not 1 <= self.min_distance <= self.gen_length:
            raise ValueError(f"min_distance must be in [1, gen_length={self.gen_length}], got {self.min_distance}")
        if not 0 <= p_shortest_demo <= 1:
            raise ValueError(f"p_shortest_demo must be in [0, 1], got {p_shortest_demo}")
        if goal_bias < 0:
            raise ValueError(f"goal_bias must be >= 0, got {goal_bias}")
        self.p_shortest_demo = p_shortest_demo
        self.goal_bias = goal_bias
        self.max_walk_tries = max_walk_tries
        self.prompt_length = prompt_length_for(size)
        self.vocab_size = vocab_size_for(size)

    # ---------------------------------------------------------------------------------------------- prompts

    def meta_for(self, maze: Maze) -> dict[str, Any]:
        """JSON-serialisable metadata of a maze: walls, start, goal, shortest length and number of shortest paths."""
        dist, count = bfs(maze, maze.start)
        return {
            **maze.to_meta(),
            "shortest_length": dist[maze.goal],
            "num_shortest_paths": count[maze.goal],
            "maze_id": maze.digest()[:16],
        }

    def random_maze(self, rng: random.Random, split: str | None = None) -> Maze:
        """One maze drawn as in the module doc (of the given split if any)."""
        for _ in range(100_000):
            open_ = tuple(random_walls(self.size, self.extra_openings, rng))
            start = rng.randrange(self.size * self.size)
            dist, count = bfs(Maze(self.size, open_, start, start), start)
            goals = [
                g
                for g in range(self.size * self.size)
                if self.min_distance <= dist[g] <= self.gen_length and count[g] >= self.min_shortest_paths
            ]
            rng.shuffle(goals)
            for goal in goals:
                maze = Maze(self.size, open_, start, goal)
                if (split is None or maze.split() == split) and has_longer_path(maze, dist[goal], self.gen_length):
                    return maze
        raise RuntimeError("no maze satisfies the constraints (min_distance, min_shortest_paths, gen_length)")

    def prompts(self, n: int, split: str = "train", seed: int = 0) -> PromptBatch:
        """``n`` prompts, deterministic in (split, seed); train and test mazes are disjoint (hash parity)."""
        if split not in SPLIT_PARITY:
            raise ValueError(f"split must be one of {sorted(SPLIT_PARITY)}, got {split!r}")
        rng = random.Random(f"maze/{split}/{seed}")
        mazes = [self.random_maze(rng, split) for _ in range(n)]
        ids = torch.tensor([encode_prompt(m) for m in mazes], dtype=torch.long).reshape(n, self.prompt_length)
        return PromptBatch(ids, torch.ones_like(ids), [self.meta_for(m) for m in mazes])

    # ------------------------------------------------------------------------------------------ demonstrations

    def _step_weights(self, to_goal: list[int], options: list[tuple[int, int]]) -> list[float]:
        return [math.exp(-self.goal_bias * to_goal[v]) for _, v in options]

    def sample_walk(self, maze: Maze, rng: random.Random) -> str:
        """One self-avoiding random walk from the start to the goal, longer than a shortest path and within
        ``gen_length`` moves (rejection)."""
        to_goal = bfs(maze, maze.goal)[0]
        shortest = to_goal[maze.start]
        if not has_longer_path(maze, shortest, self.gen_length):
            raise ValueError("the maze has no valid path longer than its shortest ones")
        for _ in range(self.max_walk_tries):
            cell, visited, moves = maze.start, {maze.start}, []
            while cell != maze.goal and len(moves) < self.gen_length:
                options = [(m, v) for m, v in maze.neighbours(cell) if v not in visited]
                if not options:
                    break
                weights = self._step_weights(to_goal, options)
                m, cell = rng.choices(options, weights)[0] if self.goal_bias else rng.choice(options)
                visited.add(cell)
                moves.append(MOVES[m])
            if cell == maze.goal and len(moves) > shortest:
                return "".join(moves)
        raise RuntimeError(f"no random walk reached the goal in {self.max_walk_tries} tries")

    @staticmethod
    def sample_shortest(maze: Maze, rng: random.Random) -> str:
        """A uniformly random shortest path: each step follows a neighbour with probability proportional to its
        number of shortest paths to the goal."""
        to_goal, count = bfs(maze, maze.goal)
        cell, moves = maze.start, []
        while cell != maze.goal:
            options = [(m, v) for m, v in maze.neighbours(cell) if to_goal[v] == to_goal[cell] - 1]
            m, cell = rng.choices(options, [count[v] for _, v in options])[0]
            moves.append(MOVES[m])
        return "".join(moves)

    def demonstrations(self, prompts: PromptBatch, generator: torch.Generator) -> torch.Tensor:
        """One demonstration per prompt from the mixture in the module doc; ``[N, gen_length]`` token ids."""
        rng = random.Random(int(torch.randint(2**62, (1,), generator=generator)))
        rows = []
        for meta in prompts.meta:
            maze = Maze.from_meta(meta)
            shortest = rng.random() < self.p_shortest_demo
            if not shortest and not has_longer_path(maze, shortest_distance(maze), self.gen_length):
                shortest = True  # only for hand-made mazes: drawn ones always have a longer path
            moves = self.sample_shortest(maze, rng) if shortest else self.sample_walk(maze, rng)
            rows.append(moves_to_response(maze, moves, self.gen_length))
        return torch.tensor(rows, dtype=torch.long).reshape(len(prompts), self.gen_length)

    def walk_weight(self, maze: Maze | Mapping[str, Any], moves: str) -> float:
        """Unnormalised probability ``q`` of a walk: the product of its step probabilities (0 if not self-avoiding)."""
        maze = as_maze(maze)
        to_goal = bfs(maze, maze.goal)[0]
        cell, visited, q = maze.start, {maze.start}, 1.0
        for ch in moves:
            options = [(m, v) for m, v in maze.neighbours(cell) if v not in visited]
            weights = self._step_weights(to_goal, options)
            chosen = [i for i, (m, _) in enumerate(options) if MOVES[m] == ch]
            if not chosen:
                return 0.0
            q *= weights[chosen[0]] / sum(weights)
            cell = options[chosen[0]][1]
            visited.add(cell)
        return q

    def demo_distribution(self, maze: Maze | Mapping[str, Any]) -> dict[str, float]:
        """Exact probability of each valid path (move string) under the demonstration distribution."""
        maze = as_maze(maze)
        paths = enumerate_valid_paths(maze, self.gen_length)
        best = min(len(p) for p in paths)
        q = {p: self.walk_weight(maze, p) if len(p) > best else 0.0 for p in paths}
        z = sum(q.values())
        num_shortest = sum(len(p) == best for p in paths)
        p_short = self.p_shortest_demo if z > 0 else 1.0
        return {p: (1 - p_short) * q[p] / max(z, 1e-300) + p_short * (len(p) == best) / num_shortest for p in paths}

    def tilted_distribution(self, maze: Maze | Mapping[str, Any], a: float) -> dict[str, float]:
        """``rho_a(x) ∝ p_demo(x) exp(a r(x))`` over the valid paths (the exact target for a base model equal to the
        demonstration distribution)."""
        p = self.demo_distribution(maze)
        best = min(len(x) for x in p)
        w = {x: px * math.exp(a * best / len(x)) for x, px in p.items()}
        z = sum(w.values())
        return {x: wx / z for x, wx in w.items()}

    # ----------------------------------------------------------------------------------------------- scoring

    def path_lengths(self, responses: torch.Tensor, meta: Sequence[dict[str, Any]]) -> list[int | None]:
        """Number of moves of each valid response, None for an invalid one. Never raises on token values."""
        rows = (responses.unsqueeze(0) if responses.dim() == 1 else responses).tolist()
        out: list[int | None] = []
        for row, m in zip(rows, meta, strict=True):
            maze = Maze.from_meta(m)
            moves = response_moves(row, maze)
            ok = moves is not None and is_valid_path(maze, moves, self.gen_length)
            out.append(len(moves) if ok and moves is not None else None)
        return out

    def is_valid(self, responses: torch.Tensor, meta: Sequence[dict[str, Any]]) -> torch.Tensor:
        return torch.tensor([n is not None for n in self.path_lengths(responses, meta)], dtype=torch.bool)

    def reward(self, responses: torch.Tensor, meta: Sequence[dict[str, Any]]) -> torch.Tensor:
        """0 if invalid, else shortest_length / path_length."""
        lengths = self.path_lengths(responses, meta)
        values = [0.0 if n is None else _shortest(m) / n for n, m in zip(lengths, meta, strict=True)]
        return torch.tensor(values, dtype=torch.float32)

    def is_correct(self, responses: torch.Tensor, meta: Sequence[dict[str, Any]]) -> torch.Tensor:
        lengths = self.path_lengths(responses, meta)
        return torch.tensor([n == _shortest(m) for n, m in zip(lengths, meta, strict=True)], dtype=torch.bool)

    def render(self, ids: Sequence[int]) -> str:
        return render_tokens(ids, self.size)

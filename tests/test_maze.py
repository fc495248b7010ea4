"""Tests for dtm.tasks.maze: maze generation, BFS and path enumeration, validity, reward, splits, demonstrations."""

from __future__ import annotations

import hashlib
import itertools
import math
import random
import time
from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dtm.tasks import TASKS, get_task
from dtm.tasks.maze import (
    EOS,
    MASK,
    PAD,
    SEP,
    Maze,
    MazeTask,
    count_shortest_paths,
    decode_prompt,
    draw,
    encode_prompt,
    enumerate_shortest_paths,
    enumerate_valid_paths,
    has_longer_path,
    moves_to_response,
    parse_render,
    path_key,
    random_walls,
    render_tokens,
    response_cells,
    response_moves,
    shortest_distance,
)

# The documented layout, written out independently of the module's constants.
START, GOAL, WALL0, CELL0 = 4, 5, 6, 22
VOCAB_4X4 = 38
DELTA = {"U": (-1, 0), "D": (1, 0), "L": (0, -1), "R": (0, 1)}
BIT = {"U": 1, "D": 2, "L": 4, "R": 8}


# ------------------------------------------------------------------------------------ independent references


def adjacency(meta: dict) -> dict[int, dict[str, int]]:
    """Open moves per cell, from the documented bit layout (U=1, D=2, L=4, R=8), with grid arithmetic."""
    s = meta["size"]
    out: dict[int, dict[str, int]] = {}
    for cell, mask in enumerate(meta["open"]):
        r, c = divmod(cell, s)
        out[cell] = {}
        for move, (dr, dc) in DELTA.items():
            if mask & BIT[move]:
                out[cell][move] = (r + dr) * s + (c + dc)
    return out


def brute_simple_paths(meta: dict) -> list[str]:
    """Every simple start -> goal path, by an explicit stack over (cell, visited, moves)."""
    adj = adjacency(meta)
    found = []
    stack = [(meta["start"], frozenset([meta["start"]]), "")]
    while stack:
        cell, seen, moves = stack.pop()
        if cell == meta["goal"]:
            found.append(moves)
            continue
        for move, nxt in adj[cell].items():
            if nxt not in seen:
                stack.append((nxt, seen | {nxt}, moves + move))
    return found


def path_cells(meta: dict, moves: str) -> list[int]:
    """Cells visited after the start by a move string (grid arithmetic, walls ignored)."""
    s = meta["size"]
    r, c = divmod(meta["start"], s)
    cells = []
    for move in moves:
        r, c = r + DELTA[move][0], c + DELTA[move][1]
        assert 0 <= r < s and 0 <= c < s
        cells.append(r * s + c)
    return cells


def cell_row(cells: list[int], gen_length: int) -> list[int]:
    """A response from the documented layout: cell-id tokens, then EOS."""
    return [CELL0 + c for c in cells] + [EOS] * (gen_length - len(cells))


def slow_reward(meta: dict, tokens: list[int], gen_length: int) -> float:
    """Reward written from the module doc: cell ids up to the first EOS, only EOS after, each cell an open grid
    neighbour of the previous one (from the start), no revisits, last cell the goal."""
    s = meta["size"]
    cells = []
    i = 0
    while i < len(tokens) and tokens[i] != EOS:
        if not CELL0 <= tokens[i] < CELL0 + s * s:
            return 0.0
        cells.append(tokens[i] - CELL0)
        i += 1
    if any(t != EOS for t in tokens[i:]) or not cells or len(cells) > gen_length:
        return 0.0
    visited = [meta["start"]]
    for cell in cells:
        (r0, c0), (r1, c1) = divmod(visited[-1], s), divmod(cell, s)
        moves = [m for m, d in DELTA.items() if d == (r1 - r0, c1 - c0)]
        if not moves or not meta["open"][visited[-1]] & BIT[moves[0]] or cell in visited:
            return 0.0
        visited.append(cell)
    if visited[-1] != meta["goal"]:
        return 0.0
    best = min(len(p) for p in brute_simple_paths(meta))
    return best / len(cells)


def connected(meta: dict) -> bool:
    adj = adjacency(meta)
    seen, todo = {0}, [0]
    while todo:
        for nxt in adj[todo.pop()].values():
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return len(seen) == meta["size"] ** 2


def batch(task: MazeTask, meta: dict, paths: list[str]) -> torch.Tensor:
    return torch.tensor([cell_row(path_cells(meta, p), task.gen_length) for p in paths], dtype=torch.long)


@pytest.fixture(scope="module")
def task() -> MazeTask:
    return MazeTask()


@pytest.fixture(scope="module")
def train(task):
    return task.prompts(300, split="train", seed=0)


# -------------------------------------------------------------------------------------------------- mazes


@pytest.mark.parametrize(
    "options", [{}, {"extra_openings": 2}, {"size": 3, "extra_openings": 2}, {"size": 5, "min_shortest_paths": 3}]
)
def test_mazes_have_loops_and_several_shortest_paths(options):
    task = MazeTask(**options)
    prompts = task.prompts(60, split="train", seed=1)
    s = task.size
    n = s * s
    assert prompts.ids.shape == (60, 2 * n + 5) == (60, task.prompt_length)
    assert prompts.attention_mask.all() and (prompts.ids[:, -1] == SEP).all()
    assert prompts.ids.min() >= 0 and prompts.ids.max() < task.vocab_size == CELL0 + n
    for ids, meta in zip(prompts.ids.tolist(), prompts.meta, strict=True):
        # the documented layout: [cell id, wall pattern] per cell, then START, start, GOAL, goal, SEP
        assert ids[0 : 2 * n : 2] == [CELL0 + c for c in range(n)]
        assert ids[1 : 2 * n : 2] == [WALL0 + o for o in meta["open"]]
        assert ids[2 * n :] == [START, CELL0 + meta["start"], GOAL, CELL0 + meta["goal"], SEP]
        edges = sum(bin(o).count("1") for o in meta["open"]) // 2
        assert edges == s * s - 1 + task.extra_openings > s * s - 1  # a spanning tree plus extra openings: loops
        assert connected(meta)
        paths = brute_simple_paths(meta)
        best = min(len(p) for p in paths)
        assert meta["shortest_length"] == best >= task.min_distance
        assert meta["num_shortest_paths"] == sum(len(p) == best for p in paths) >= task.min_shortest_paths
        assert any(best < len(p) <= task.gen_length for p in paths)  # a longer valid path for the walks
        assert Maze.from_meta(meta).split() == "train"


def test_meta_is_json_serialisable(train):
    import json

    assert json.loads(json.dumps(train.meta)) == train.meta


def test_wilson_spanning_trees_are_uniform_on_2x2():
    rng = random.Random(0)
    counts = Counter(tuple(random_walls(2, 0, rng)) for _ in range(4000))
    assert len(counts) == 4  # the 4-cycle has 4 spanning trees
    for walls, count in counts.items():
        assert sum(bin(o).count("1") for o in walls) // 2 == 3
        assert abs(count / 4000 - 0.25) < 0.03


def test_random_walls_without_openings_are_trees():
    rng = random.Random(1)
    for _ in range(50):
        walls = random_walls(5, 0, rng)
        meta = {"size": 5, "open": walls, "start": 0, "goal": 24}
        assert sum(bin(o).count("1") for o in walls) // 2 == 24 and connected(meta)
        assert len(brute_simple_paths(meta)) == 1  # a tree has exactly one path between two cells
        Maze(5, tuple(walls), 0, 24).check()


# ----------------------------------------------------------------------------------------- search vs brute force


@pytest.mark.parametrize("options", [{}, {"size": 3, "extra_openings": 4}, {"size": 5, "extra_openings": 6}])
def test_bfs_and_enumeration_match_brute_force(options):
    task = MazeTask(**options)
    for meta in task.prompts(25, split="test", seed=2).meta:
        paths = brute_simple_paths(meta)
        best = min(len(p) for p in paths)
        shortest = sorted(p for p in paths if len(p) == best)
        assert shortest_distance(meta) == best
        assert count_shortest_paths(meta) == len(shortest) == len(enumerate_shortest_paths(meta))
        assert enumerate_shortest_paths(meta) == shortest
        assert enumerate_valid_paths(meta) == sorted(paths)
        for max_len in (best, best + 1, best + 3):
            assert enumerate_valid_paths(meta, max_len) == sorted(p for p in paths if len(p) <= max_len)
            assert has_longer_path(meta, best, max_len) == any(best < len(p) <= max_len for p in paths)
        assert enumerate_valid_paths(meta, best - 1) == []


def test_unreachable_goal():
    # 2x2 with a single passage 0-1: cells 2 and 3 are closed off from 0
    maze = Maze(2, (8, 4, 0, 0), 0, 3)
    assert shortest_distance(maze) == -1 and count_shortest_paths(maze) == 0
    assert enumerate_shortest_paths(maze) == [] and enumerate_valid_paths(maze) == []


# -------------------------------------------------------------------------------------------- validity / reward


def test_validity_exhaustive_on_3x3():
    """Every response made of distinct non-start cells (all orders, all lengths up to gen_length): exactly the
    simple start -> goal paths are accepted (non-neighbour jumps, wall crossings, stopping short or passing through
    the goal are all in there)."""
    task = MazeTask(size=3, extra_openings=3)
    assert task.gen_length == 8
    for meta in task.prompts(1, split="train", seed=3).meta:
        others = [c for c in range(9) if c != meta["start"]]
        seqs = [seq for k in range(task.gen_length + 1) for seq in itertools.permutations(others, k)]
        responses = torch.tensor([cell_row(list(seq), task.gen_length) for seq in seqs])
        valid = task.is_valid(responses, [meta] * len(seqs))
        accepted = {seq for seq, v in zip(seqs, valid.tolist(), strict=True) if v}
        paths = brute_simple_paths(meta)
        assert accepted == {tuple(path_cells(meta, p)) for p in paths}
        assert len(paths) == len(enumerate_valid_paths(meta, task.gen_length)) > meta["num_shortest_paths"]
        reward = task.reward(responses, [meta] * len(seqs))
        expected = [meta["shortest_length"] / len(seq) if seq in accepted else 0.0 for seq in seqs]
        assert torch.allclose(reward, torch.tensor(expected), atol=1e-6, rtol=0)


def test_reward_of_shortest_longer_and_invalid_paths(task, train):
    for meta in train.meta[:60]:
        paths = enumerate_valid_paths(meta, task.gen_length)
        best = meta["shortest_length"]
        shortest = [p for p in paths if len(p) == best]
        longer = [p for p in paths if len(p) > best]
        assert shortest and longer
        metas = [meta] * len(paths)
        responses = batch(task, meta, shortest + longer)
        r = task.reward(responses, metas)
        assert r.dtype == torch.float32
        assert (r[: len(shortest)] == 1.0).all()
        tail = r[len(shortest) :]
        assert ((tail > 0) & (tail < 1)).all()
        assert torch.equal(tail, torch.tensor([best / len(p) for p in longer], dtype=torch.float32))
        correct = task.is_correct(responses, metas).tolist()
        assert correct == [True] * len(shortest) + [False] * len(longer)
        assert task.is_valid(responses, metas).all()


def defects(meta: dict, path: str, gen_length: int) -> dict[str, tuple[list[int], dict]]:
    """Invalid variants of a valid path (at least 4 moves) as ``(response, meta)``, one per kind of defect."""
    adj = adjacency(meta)
    s, n = meta["size"], meta["size"] ** 2
    cells = path_cells(meta, path)
    full = [meta["start"], *cells]
    ok = cell_row(cells, gen_length)
    out: dict[str, tuple[list[int], dict]] = {}
    # the same response through a maze with the passage of its second step walled up: only the wall is wrong
    a, b = full[1], full[2]
    move = next(m for m, v in adj[a].items() if v == b)
    back = {"U": "D", "D": "U", "L": "R", "R": "L"}
    walled = list(meta["open"])
    walled[a] &= ~BIT[move]
    walled[b] &= ~BIT[back[move]]
    out["wall"] = (ok, {**meta, "open": walled})
    # a step to a grid neighbour behind a wall of this maze (the rest of the path cannot follow)
    for i, cell in enumerate(full[:-1]):
        r, c = divmod(cell, s)
        inner = [m for m, (dr, dc) in DELTA.items() if 0 <= r + dr < s and 0 <= c + dc < s and m not in adj[cell]]
        if inner:
            out["wall_step"] = (
                cell_row([*cells[:i], cell + s * DELTA[inner[0]][0] + DELTA[inner[0]][1]], gen_length),
                meta,
            )
            break
    # a jump over one cell of the path (to a cell two steps away), the rest of the path intact
    out["jump"] = (cell_row(cells[:1] + cells[2:], gen_length), meta)
    out["jump_from_start"] = (cell_row(cells[1:], gen_length), meta)
    # leaving the grid: the id the grid arithmetic would give past the border (a wrapped cell id, a wall-pattern
    # token or an id past the cells)
    for i, cell in enumerate(full[:-1]):
        r, c = divmod(cell, s)
        border = [m for m, (dr, dc) in DELTA.items() if not (0 <= r + dr < s and 0 <= c + dc < s)]
        if border:
            off = CELL0 + cell + s * DELTA[border[0]][0] + DELTA[border[0]][1]
            row = [CELL0 + x for x in cells[:i]] + [off]
            out["border"] = (row + [EOS] * (gen_length - len(row)), meta)
            break
    out["short"] = (cell_row(cells[:-1], gen_length), meta)
    out["empty"] = (cell_row([], gen_length), meta)
    after = list(ok)
    after[len(path) + 1] = CELL0 + meta["goal"]
    out["after_eos"] = (after, meta)
    non_cells = {
        "pad": PAD,
        "mask": MASK,
        "sep": SEP,
        "start": START,
        "goal": GOAL,
        "wall_token": WALL0 + 15,
        "past_cells": CELL0 + n,
        "big": 999,
        "neg": -1,
    }
    for name, bad in non_cells.items():
        row = list(ok)
        row[len(path) // 2] = bad
        out[name] = (row, meta)
    pad_tail = list(ok)
    pad_tail[-1] = PAD
    out["pad_tail"] = (pad_tail, meta)
    out["revisit_start"] = (cell_row([cells[0], meta["start"], *cells], gen_length), meta)
    out["revisit"] = (cell_row([cells[0], cells[1], cells[0], *cells[1:]], gen_length), meta)
    out["past_goal"] = (cell_row([*cells, full[-2]], gen_length), meta)
    onward = [v for v in adj[meta["goal"]].values() if v not in full]
    if onward:
        out["through_goal"] = (cell_row([*cells, onward[0]], gen_length), meta)
    return out


def test_validity_rejects_each_defect(task, train):
    kinds = Counter()
    for meta in train.meta[:80]:
        path = enumerate_shortest_paths(meta)[0]
        assert len(path) >= 4
        for kind, (row, m) in defects(meta, path, task.gen_length).items():
            assert len(row) == task.gen_length
            assert slow_reward(m, row, task.gen_length) == 0.0, kind
            r = torch.tensor([row])
            assert not task.is_valid(r, [m]).item(), (kind, task.render(row))
            assert task.reward(r, [m]).item() == 0.0 and not task.is_correct(r, [m]).item()
            kinds[kind] += 1
        # the same path is valid in its own maze
        assert task.is_valid(batch(task, meta, [path]), [meta]).item()
    assert kinds["wall"] == kinds["jump"] == kinds["revisit"] == kinds["revisit_start"] == 80
    assert kinds["wall_step"] > 40 and kinds["border"] > 40 and kinds["through_goal"] > 10


def test_wrapped_cell_ids_are_not_neighbours():
    # 2 rows: cell 1 (top right) and cell 2 (bottom left) of a 2x2 grid differ by 1 but are not neighbours; the same
    # for cells 3 and 4 of a 3x3 grid. A checker that compared ids only would accept these.
    maze = Maze(2, (10, 6, 9, 5), 0, 2)  # 0-1 and 0-2 and 1-3 and 2-3 all open: a 4-cycle
    maze.check()
    assert response_moves([CELL0 + 1, CELL0 + 2, EOS, EOS], maze) is None
    assert response_moves([CELL0 + 1, CELL0 + 3, CELL0 + 2, EOS], maze) == "RDL"
    task = MazeTask(size=2, min_distance=1, min_shortest_paths=1, gen_length=4, extra_openings=1)
    meta = task.meta_for(maze)
    rows = torch.tensor(
        [[CELL0 + 1, CELL0 + 2, EOS, EOS], [CELL0 + 1, CELL0 + 3, CELL0 + 2, EOS], [CELL0 + 2, EOS, EOS, EOS]]
    )
    assert task.reward(rows, [meta] * 3).tolist() == pytest.approx([0.0, 1 / 3, 1.0])


def test_demonstrations_and_shortest_paths_are_valid(task, train):
    demos = task.demonstrations(train, torch.Generator().manual_seed(0))
    assert demos.shape == (len(train), task.gen_length) and demos.dtype == torch.long
    assert task.is_valid(demos, train.meta).all()
    expected = [slow_reward(m, row, task.gen_length) for m, row in zip(train.meta, demos.tolist(), strict=True)]
    assert torch.allclose(task.reward(demos, train.meta), torch.tensor(expected), atol=1e-6, rtol=0)
    for meta in train.meta[:50]:
        shortest = enumerate_shortest_paths(meta)
        assert task.is_valid(batch(task, meta, shortest), [meta] * len(shortest)).all()


def test_response_cell_ids_are_the_prompt_cell_ids(task, train):
    """Every response token before EOS is a token of the prompt, sitting right before that cell's walls."""
    demos = task.demonstrations(train, torch.Generator().manual_seed(5))
    for prompt, row, meta in zip(train.ids.tolist(), demos.tolist(), train.meta, strict=True):
        cells = [t for t in row if t != EOS]
        for prev, token in zip([CELL0 + meta["start"], *cells], cells, strict=False):
            at = prompt.index(token)
            assert at % 2 == 0 and prompt[at + 1] == WALL0 + meta["open"][token - CELL0]
            # a step is a local check: prev's walls (next to prev in the prompt) open towards token
            (r0, c0), (r1, c1) = divmod(prev - CELL0, task.size), divmod(token - CELL0, task.size)
            move = next(m for m, d in DELTA.items() if d == (r1 - r0, c1 - c0))
            assert (prompt[prompt.index(prev) + 1] - WALL0) & BIT[move]


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.integers(-3, VOCAB_4X4 + 3), min_size=16, max_size=16),
    st.integers(0, 49),
    st.integers(0, 2),
)
def test_reward_never_raises_and_matches_reference(tokens, which, mode):
    task = MazeTask()
    meta = _hypothesis_prompts().meta[which]
    if mode == 1:  # mostly cell ids and EOS
        tokens = [CELL0 + t % 16 if t % 5 else EOS for t in tokens]
    elif mode == 2:  # a walk through open passages that stops at the goal, so that valid paths are hit too
        adj, cell, walk = adjacency(meta), meta["start"], []
        for t in tokens:
            if cell == meta["goal"]:
                break
            options = sorted(adj[cell].values())
            cell = options[t % len(options)]
            walk.append(cell)
        tokens = cell_row(walk, 16)
    r = task.reward(torch.tensor([tokens]), [meta])
    assert r.shape == (1,) and 0.0 <= r.item() <= 1.0
    assert r.item() == pytest.approx(slow_reward(meta, tokens, task.gen_length), abs=1e-6)
    assert task.is_valid(torch.tensor([tokens]), [meta]).item() == (r.item() > 0)
    assert isinstance(path_key(tokens), str) and isinstance(path_key(tokens, meta), str)
    assert parse_render(task.render(tokens)) == tokens


_CACHE: dict[str, object] = {}


def _hypothesis_prompts():
    if "p" not in _CACHE:
        _CACHE["p"] = MazeTask().prompts(50, split="train", seed=7)
    return _CACHE["p"]


def test_random_tensors_never_raise(task, train):
    g = torch.Generator().manual_seed(0)
    responses = torch.randint(-5, task.vocab_size + 5, (len(train), task.gen_length), generator=g)
    assert task.reward(responses, train.meta).shape == (len(train),)
    assert task.is_valid(responses, train.meta).dtype == torch.bool
    assert task.reward(responses[:0], []).shape == (0,)
    assert task.reward(responses[0], train.meta[:1]).shape == (1,)  # a single unbatched row


# ------------------------------------------------------------------------------------------------- prompts


def test_prompts_deterministic_and_prefix_stable(task):
    a = task.prompts(100, split="train", seed=5)
    b = task.prompts(100, split="train", seed=5)
    assert torch.equal(a.ids, b.ids) and a.meta == b.meta
    assert torch.equal(task.prompts(40, split="train", seed=5).ids, a.ids[:40])
    assert not torch.equal(a.ids, task.prompts(100, split="train", seed=6).ids)
    assert not torch.equal(a.ids, task.prompts(100, split="test", seed=5).ids)
    with pytest.raises(ValueError, match="split"):
        task.prompts(3, split="valid")


def test_train_and_test_are_disjoint(task):
    def keys(split):
        return {
            (tuple(m["open"]), m["start"], m["goal"])
            for seed in range(3)
            for m in task.prompts(400, split=split, seed=seed).meta
        }

    train, test = keys("train"), keys("test")
    assert len(train) > 1000 and len(test) > 1000
    assert not train & test
    for split, mazes in (("train", train), ("test", test)):
        for walls, start, goal in mazes:  # the documented rule: parity of the first SHA-256 byte
            key = f"{task.size}|{','.join(map(str, walls))}|{start}|{goal}"
            assert hashlib.sha256(key.encode()).digest()[0] % 2 == (split == "test")


def test_prompts_and_demonstrations_are_fast(task):
    """Measured in CPU time of this process, which load from other processes does not inflate."""
    t0 = time.process_time()
    prompts = task.prompts(2000, split="test", seed=11)
    assert time.process_time() - t0 < 3.0
    t0 = time.process_time()
    task.demonstrations(prompts, torch.Generator().manual_seed(0))
    assert time.process_time() - t0 < 3.0


# ------------------------------------------------------------------------------------------- demonstrations


def test_demonstrations_deterministic_diverse_mostly_not_shortest(task):
    prompts = task.prompts(1000, split="train", seed=4)
    demos = task.demonstrations(prompts, torch.Generator().manual_seed(1))
    assert torch.equal(demos, task.demonstrations(prompts, torch.Generator().manual_seed(1)))
    assert not torch.equal(demos, task.demonstrations(prompts, torch.Generator().manual_seed(2)))
    shortest = task.is_correct(demos, prompts.meta).float().mean().item()
    assert abs(shortest - task.p_shortest_demo) < 0.04  # 1000 draws: 4 standard deviations
    lengths = [len(response_cells(row, task.size)) for row in demos]
    assert lengths == [len(response_moves(row, m)) for row, m in zip(demos, prompts.meta, strict=True)]
    assert max(lengths) <= task.gen_length and sum(lengths) / len(lengths) > 6


def test_demonstrations_match_the_exact_distribution(task, train):
    g = torch.Generator().manual_seed(3)
    for meta in train.meta[:3]:
        repeated = type(train)(train.ids[:1].repeat(3000, 1), train.attention_mask[:1].repeat(3000, 1), [meta] * 3000)
        counts = Counter(path_key(row, meta) for row in task.demonstrations(repeated, g))
        exact = task.demo_distribution(meta)
        assert set(counts) <= set(exact)
        assert len(counts) >= min(6, len(exact))  # many distinct paths
        tv = 0.5 * sum(abs(counts.get(p, 0) / 3000 - q) for p, q in exact.items())
        assert tv < 0.05


def test_demo_and_tilted_distributions(task, train):
    for meta in train.meta[:30]:
        exact = task.demo_distribution(meta)
        assert set(exact) == set(enumerate_valid_paths(meta, task.gen_length))
        assert math.isclose(sum(exact.values()), 1.0)
        best, k = meta["shortest_length"], meta["num_shortest_paths"]
        short = [q for p, q in exact.items() if len(p) == best]
        assert len(short) == k and all(math.isclose(q, task.p_shortest_demo / k) for q in short)
        assert all(q > 0 for q in exact.values())
        assert task.tilted_distribution(meta, 0.0) == pytest.approx(exact)
        tilted = task.tilted_distribution(meta, 3.0)
        ratios = {p: tilted[p] / exact[p] / math.exp(3.0 * best / len(p)) for p in exact}
        assert max(ratios.values()) == pytest.approx(min(ratios.values()))
        limit = task.tilted_distribution(meta, 200.0)
        assert all(math.isclose(limit[p], 1 / k, rel_tol=1e-6) for p in exact if len(p) == best)


def test_walk_weight_sums_over_first_steps():
    task = MazeTask(size=3, extra_openings=4)
    meta = task.prompts(1, seed=0).meta[0]
    maze = Maze.from_meta(meta)
    start_moves = {m for m, _ in maze.neighbours(maze.start)}
    # the first step of a walk is uniform over the open sides of the start
    for m in start_moves:
        assert task.walk_weight(maze, "UDLR"[m]) == pytest.approx(1 / len(start_moves))


# ------------------------------------------------------------------------------------------ encoding / render


def test_prompt_encode_decode_and_render_round_trip(task, train):
    for ids, meta in zip(train.ids[:100], train.meta[:100], strict=True):
        maze = decode_prompt(ids)
        assert maze == Maze.from_meta(meta)
        assert encode_prompt(maze) == ids.tolist()
        text = task.render(ids.tolist())
        assert parse_render(text) == ids.tolist() and render_tokens(ids.tolist()) == text
        words = text.split()
        assert words[-5:] == ["S", str(meta["start"]), "G", str(meta["goal"]), "|"]
        assert words[0:32:2] == [str(c) for c in range(16)]
        assert all(set(w) <= set("UDLR-") for w in words[1:32:2])
        picture = draw(meta, enumerate_shortest_paths(meta)[0])
        assert len(picture.splitlines()) == 2 * task.size + 1
        assert picture.count("*") == meta["shortest_length"] - 1
    assert decode_prompt([PAD, PAD, *train.ids[0].tolist()]) == Maze.from_meta(train.meta[0])
    assert task.render(encode_prompt(Maze(2, (10, 6, 9, 5), 0, 3))) == "0 DR 1 DL 2 UR 3 UL S 0 G 3 |"
    garbage = [PAD, MASK, SEP, EOS, START, GOAL, WALL0, WALL0 + 15, CELL0, CELL0 + 15, CELL0 + 16, 1000, -2]
    assert task.render(garbage) == "_ ? | . S G - UDLR 0 15 <38> <1000> <-2>"
    assert render_tokens(garbage) == "_ ? | . S G - UDLR 0 15 16 978 <-2>"  # no size: every id from 22 is a cell
    assert parse_render(task.render(garbage)) == garbage == parse_render(render_tokens(garbage))
    with pytest.raises(ValueError):
        parse_render("0 x")


def test_decode_prompt_rejects_malformed(train):
    ids = train.ids[0].tolist()
    meta = train.meta[0]
    with pytest.raises(ValueError, match="SEP"):
        decode_prompt(ids[:-1])
    with pytest.raises(ValueError):
        decode_prompt(ids[2:])  # one cell missing
    swapped = list(ids)
    swapped[0], swapped[2] = swapped[2], swapped[0]  # cell ids out of order
    with pytest.raises(ValueError, match="row-major"):
        decode_prompt(swapped)
    no_walls = list(ids)
    no_walls[1] = CELL0 + 1
    with pytest.raises(ValueError, match="wall"):
        decode_prompt(no_walls)
    for at, bad in ((32, GOAL), (33, WALL0), (34, START), (35, CELL0 + 16)):
        broken = list(ids)
        broken[at] = bad
        with pytest.raises(ValueError, match="START"):
            decode_prompt(broken)
    same = list(ids)
    same[35] = CELL0 + meta["start"]
    with pytest.raises(ValueError, match="different"):
        decode_prompt(same)
    asymmetric = list(ids)
    asymmetric[1] = WALL0 + ((ids[1] - WALL0) ^ 8)  # toggle cell 0's right side
    with pytest.raises(ValueError, match="wall"):
        decode_prompt(asymmetric)


def test_path_key_and_response_moves(task, train):
    meta = train.meta[0]
    for path in enumerate_valid_paths(meta, task.gen_length):
        row = moves_to_response(meta, path, task.gen_length)
        assert row == cell_row(path_cells(meta, path), task.gen_length)
        assert path_key(row, meta) == path == response_moves(row, meta) == path_key(torch.tensor(row), meta)
        assert path_key(row) == " ".join(str(c) for c in path_cells(meta, path))  # no maze: the rendered cells
        assert response_cells(row, task.size) == path_cells(meta, path)
    maze = Maze(4, (0,) * 16, 5, 10)  # grid arithmetic only: walls do not matter to these helpers
    row = moves_to_response(maze, "RDL", task.gen_length)
    assert row[:4] == [CELL0 + 6, CELL0 + 10, CELL0 + 9, EOS] and len(row) == task.gen_length
    assert response_moves(row, maze) == "RDL" and path_key(row, maze) == "6 10 9"  # crosses walls: invalid
    assert response_moves([*row[:4], CELL0, *row[5:]], maze) is None  # a cell after EOS
    assert response_moves([CELL0 + 7, *row[1:]], maze) is None  # 5 -> 7 is a jump
    assert response_moves([CELL0 + 6] * task.gen_length, maze) is None
    assert response_moves([EOS] * task.gen_length, maze) == ""
    assert path_key([CELL0 + 1, PAD, EOS, CELL0]) == "1 _"
    assert path_key([CELL0 + 1, WALL0 + 3, EOS], maze) == "1 UD"
    with pytest.raises(ValueError):
        moves_to_response(maze, "R" * (task.gen_length + 1), task.gen_length)
    for bad in ("U" * 2, "RRR", "X"):  # leaving the grid (up from row 1, right from column 1), not a move
        with pytest.raises(ValueError):
            moves_to_response(maze, bad, task.gen_length)


# ------------------------------------------------------------------------------------------------ registry


def test_registry_and_options():
    assert TASKS["maze"] is MazeTask
    task = get_task("maze", size=5, extra_openings=6)
    assert isinstance(task, MazeTask) and task.name == "maze"
    assert (task.size, task.gen_length, task.prompt_length, task.mask_token_id) == (5, 24, 55, MASK)
    assert task.vocab_size == CELL0 + 25
    default = MazeTask()
    assert (default.size, default.gen_length, default.prompt_length, default.vocab_size) == (4, 16, 37, VOCAB_4X4)
    for bad in ({"size": 1}, {"extra_openings": 10}, {"p_shortest_demo": 1.5}, {"goal_bias": -1}, {"min_distance": 0}):
        with pytest.raises(ValueError):
            MazeTask(**bad)


def _brute_force_mazes(size: int, extra_openings: int, gen_length: int) -> dict[str, set[str]]:
    """Every maze the generator can draw, by split: every connected set of ``size**2 - 1 + extra_openings`` open
    passages, every start, and every goal that the generator's rules admit, checked by explicit path enumeration."""
    n = size * size
    edges = [(c, c + 1, 3, 2) for c in range(n) if c % size < size - 1]  # (a, b, move a->b, move b->a): R and L
    edges += [(c, c + size, 1, 0) for c in range(n - size)]  # D and U
    out: dict[str, set[str]] = {"train": set(), "test": set()}
    for chosen in itertools.combinations(edges, n - 1 + extra_openings):
        open_ = [0] * n
        for a, b, ab, ba in chosen:
            open_[a] |= 1 << ab
            open_[b] |= 1 << ba
        for start in range(n):
            for goal in range(n):
                if goal == start:
                    continue
                maze = Maze(size, tuple(open_), start, goal)
                paths = enumerate_valid_paths(maze, gen_length)
                if not paths:
                    continue
                shortest = min(map(len, paths))
                n_shortest = sum(len(p) == shortest for p in paths)
                if shortest >= size and n_shortest >= 2 and len(paths) > n_shortest:
                    out[maze.split()].add(maze.key())
    return out


def test_the_3x3_maze_space_is_small_and_the_generator_covers_it():
    """docs/fit.md explains the base model's memorisation by the size of the 3 x 3 space (3 extra openings): 12 wall
    layouts (one closed inner wall), 124 training and 116 held-out mazes. The generator draws exactly those."""
    space = _brute_force_mazes(3, 3, 8)
    assert {split: len(keys) for split, keys in space.items()} == {"train": 124, "test": 116}
    task = MazeTask(size=3, extra_openings=3, gen_length=8)
    rng = random.Random(0)
    drawn = {"train": set(), "test": set()}
    for _ in range(6000):
        maze = task.random_maze(rng)
        drawn[maze.split()].add(maze.key())
    assert drawn == space
    assert len({key.split("|")[1] for keys in space.values() for key in keys}) == 12

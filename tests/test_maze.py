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
    VOCAB_SIZE,
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
    response_moves,
    shortest_distance,
)

TOKEN = {"U": 4, "D": 5, "L": 6, "R": 7}
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


def slow_reward(meta: dict, tokens: list[int], gen_length: int) -> float:
    """Reward written from the module doc: moves up to the first EOS, only EOS after, simple path ending at the goal."""
    s = meta["size"]
    moves = []
    i = 0
    while i < len(tokens) and tokens[i] != EOS:
        if tokens[i] not in TOKEN.values():
            return 0.0
        moves.append("UDLR"[tokens[i] - 4])
        i += 1
    if any(t != EOS for t in tokens[i:]) or len(moves) > gen_length:
        return 0.0
    r, c = divmod(meta["start"], s)
    visited = {(r, c)}
    for move in moves:
        if not meta["open"][r * s + c] & BIT[move]:
            return 0.0
        r, c = r + DELTA[move][0], c + DELTA[move][1]
        if not (0 <= r < s and 0 <= c < s) or (r, c) in visited:
            return 0.0
        visited.add((r, c))
    if r * s + c != meta["goal"]:
        return 0.0
    best = min(len(p) for p in brute_simple_paths(meta))
    return best / len(moves)


def connected(meta: dict) -> bool:
    adj = adjacency(meta)
    seen, todo = {0}, [0]
    while todo:
        for nxt in adj[todo.pop()].values():
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return len(seen) == meta["size"] ** 2


def batch(task: MazeTask, paths: list[str]) -> torch.Tensor:
    return torch.tensor([moves_to_response(p, task.gen_length) for p in paths], dtype=torch.long)


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
    assert prompts.ids.shape == (60, s * s + 1) == (60, task.prompt_length)
    assert prompts.attention_mask.all() and (prompts.ids[:, -1] == SEP).all()
    assert prompts.ids.min() >= 0 and prompts.ids.max() < task.vocab_size == VOCAB_SIZE
    for meta in prompts.meta:
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
    task = MazeTask(size=3, extra_openings=3)
    assert task.gen_length == 8
    for meta in task.prompts(1, split="train", seed=3).meta:
        rows, strings = [], []
        for k in range(task.gen_length + 1):
            for seq in itertools.product("UDLR", repeat=k):
                strings.append("".join(seq))
                rows.append(moves_to_response(strings[-1], task.gen_length))
        responses = torch.tensor(rows)
        valid = task.is_valid(responses, [meta] * len(rows))
        accepted = {s for s, v in zip(strings, valid.tolist(), strict=True) if v}
        assert accepted == set(brute_simple_paths(meta)) == set(enumerate_valid_paths(meta, task.gen_length))
        reward = task.reward(responses, [meta] * len(rows))
        expected = [meta["shortest_length"] / len(s) if s in accepted else 0.0 for s in strings]
        assert torch.allclose(reward, torch.tensor(expected), atol=1e-6, rtol=0)


def test_reward_of_shortest_longer_and_invalid_paths(task, train):
    for meta in train.meta[:60]:
        paths = enumerate_valid_paths(meta, task.gen_length)
        best = meta["shortest_length"]
        shortest = [p for p in paths if len(p) == best]
        longer = [p for p in paths if len(p) > best]
        assert shortest and longer
        metas = [meta] * len(paths)
        r = task.reward(batch(task, shortest + longer), metas)
        assert r.dtype == torch.float32
        assert (r[: len(shortest)] == 1.0).all()
        tail = r[len(shortest) :]
        assert ((tail > 0) & (tail < 1)).all()
        assert torch.equal(tail, torch.tensor([best / len(p) for p in longer], dtype=torch.float32))
        correct = task.is_correct(batch(task, shortest + longer), metas).tolist()
        assert correct == [True] * len(shortest) + [False] * len(longer)
        assert task.is_valid(batch(task, shortest + longer), metas).all()


def defects(meta: dict, path: str, gen_length: int) -> dict[str, list[int]]:
    """Invalid variants of a valid path, one per kind of defect."""
    adj = adjacency(meta)
    s = meta["size"]
    ok = moves_to_response(path, gen_length)
    cells = [meta["start"]]
    for move in path:
        cells.append(adj[cells[-1]][move])
    out: dict[str, list[int]] = {}
    # a wall between two cells inside the grid, crossed right from the start of the path
    for i, cell in enumerate(cells[:-1]):
        r, c = divmod(cell, s)
        inner = [m for m, (dr, dc) in DELTA.items() if 0 <= r + dr < s and 0 <= c + dc < s and m not in adj[cell]]
        if inner:
            out["wall"] = moves_to_response(path[:i] + inner[0] + path[i + 1 :], gen_length)
            break
    for i, cell in enumerate(cells[:-1]):
        r, c = divmod(cell, s)
        border = [m for m, (dr, dc) in DELTA.items() if not (0 <= r + dr < s and 0 <= c + dc < s)]
        if border:
            out["border"] = moves_to_response(path[:i] + border[0], gen_length)
            break
    out["short"] = moves_to_response(path[:-1], gen_length)
    out["empty"] = moves_to_response("", gen_length)
    after = list(ok)
    after[len(path) + 1] = TOKEN["U"]
    out["after_eos"] = after
    for name, bad in {"pad": PAD, "mask": MASK, "sep": SEP, "cell": 20, "big": 999, "neg": -1}.items():
        row = list(ok)
        row[len(path) // 2] = bad
        out[name] = row
    pad_tail = list(ok)
    pad_tail[-1] = PAD
    out["pad_tail"] = pad_tail
    back = {"U": "D", "D": "U", "L": "R", "R": "L"}
    out["revisit"] = moves_to_response(path[0] + back[path[0]] + path, gen_length)
    out["past_goal"] = moves_to_response(path + back[path[-1]], gen_length)
    return out


def test_validity_rejects_each_defect(task, train):
    kinds = Counter()
    for meta in train.meta[:80]:
        path = enumerate_shortest_paths(meta)[0]
        for kind, row in defects(meta, path, task.gen_length).items():
            assert len(row) == task.gen_length
            r = torch.tensor([row])
            assert not task.is_valid(r, [meta]).item(), (kind, task.render(row))
            assert task.reward(r, [meta]).item() == 0.0 and not task.is_correct(r, [meta]).item()
            kinds[kind] += 1
    assert kinds["wall"] > 40 and kinds["border"] > 40 and kinds["revisit"] == 80


def test_demonstrations_and_shortest_paths_are_valid(task, train):
    demos = task.demonstrations(train, torch.Generator().manual_seed(0))
    assert demos.shape == (len(train), task.gen_length) and demos.dtype == torch.long
    assert task.is_valid(demos, train.meta).all()
    expected = [slow_reward(m, row, task.gen_length) for m, row in zip(train.meta, demos.tolist(), strict=True)]
    assert torch.allclose(task.reward(demos, train.meta), torch.tensor(expected), atol=1e-6, rtol=0)
    for meta in train.meta[:50]:
        shortest = enumerate_shortest_paths(meta)
        assert task.is_valid(batch(task, shortest), [meta] * len(shortest)).all()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(-3, VOCAB_SIZE + 3), min_size=16, max_size=16),
    st.integers(0, 49),
    st.booleans(),
)
def test_reward_never_raises_and_matches_reference(tokens, which, movesish):
    task = MazeTask()
    meta = _hypothesis_prompts().meta[which]
    if movesish:  # mostly moves and EOS, so that valid paths are hit too
        tokens = [4 + t % 4 if t % 5 else EOS for t in tokens]
    r = task.reward(torch.tensor([tokens]), [meta])
    assert r.shape == (1,) and 0.0 <= r.item() <= 1.0
    assert r.item() == pytest.approx(slow_reward(meta, tokens, task.gen_length), abs=1e-6)
    assert task.is_valid(torch.tensor([tokens]), [meta]).item() == (r.item() > 0)
    assert isinstance(path_key(tokens), str) and isinstance(task.render(tokens), str)


_CACHE: dict[str, object] = {}


def _hypothesis_prompts():
    if "p" not in _CACHE:
        _CACHE["p"] = MazeTask().prompts(50, split="train", seed=7)
    return _CACHE["p"]


def test_random_tensors_never_raise(task, train):
    g = torch.Generator().manual_seed(0)
    responses = torch.randint(-5, VOCAB_SIZE + 5, (len(train), task.gen_length), generator=g)
    assert task.reward(responses, train.meta).shape == (len(train),)
    assert task.is_valid(responses, train.meta).dtype == torch.bool
    assert task.reward(responses[:0], []).shape == (0,)


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


def test_prompts_are_fast(task):
    t0 = time.perf_counter()
    task.prompts(2000, split="test", seed=11)
    assert time.perf_counter() - t0 < 3.0


# ------------------------------------------------------------------------------------------- demonstrations


def test_demonstrations_deterministic_diverse_mostly_not_shortest(task):
    prompts = task.prompts(1000, split="train", seed=4)
    demos = task.demonstrations(prompts, torch.Generator().manual_seed(1))
    assert torch.equal(demos, task.demonstrations(prompts, torch.Generator().manual_seed(1)))
    assert not torch.equal(demos, task.demonstrations(prompts, torch.Generator().manual_seed(2)))
    shortest = task.is_correct(demos, prompts.meta).float().mean().item()
    assert abs(shortest - task.p_shortest_demo) < 0.04  # 1000 draws: 4 standard deviations
    lengths = [len(response_moves(row)) for row in demos]
    assert max(lengths) <= task.gen_length and sum(lengths) / len(lengths) > 6


def test_demonstrations_match_the_exact_distribution(task, train):
    g = torch.Generator().manual_seed(3)
    for meta in train.meta[:3]:
        repeated = type(train)(train.ids[:1].repeat(3000, 1), train.attention_mask[:1].repeat(3000, 1), [meta] * 3000)
        counts = Counter(path_key(row) for row in task.demonstrations(repeated, g))
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
        assert parse_render(text) == ids.tolist()
        assert text.count("S") == 1 and text.count("G") == 1 and text.endswith("|")
        picture = draw(meta, enumerate_shortest_paths(meta)[0])
        assert len(picture.splitlines()) == 2 * task.size + 1
        assert picture.count("*") == meta["shortest_length"] - 1
    assert decode_prompt([PAD, PAD, *train.ids[0].tolist()]) == Maze.from_meta(train.meta[0])
    garbage = [PAD, MASK, SEP, EOS, 4, 5, 6, 7, 8, 30, 55, 56, -2, 1000]
    assert parse_render(task.render(garbage)) == garbage


def test_decode_prompt_rejects_malformed(train):
    ids = train.ids[0].tolist()
    with pytest.raises(ValueError, match="SEP"):
        decode_prompt(ids[:-1])
    with pytest.raises(ValueError):
        decode_prompt(ids[1:])  # 15 cells: not a square
    two_starts = list(ids)
    two_starts[ids.index(next(t for t in ids if 8 <= t < 24))] += 16
    with pytest.raises(ValueError, match="start"):
        decode_prompt(two_starts)
    asymmetric = list(ids)
    asymmetric[0] = (asymmetric[0] - 8) // 16 * 16 + 8 + ((asymmetric[0] - 8) % 16 ^ 8)  # toggle cell 0's right side
    with pytest.raises(ValueError, match="wall"):
        decode_prompt(asymmetric)


def test_path_key_and_response_moves(task):
    row = moves_to_response("RRDL", task.gen_length)
    assert path_key(row) == "RRDL" == response_moves(row) == path_key(torch.tensor(row))
    assert len(row) == task.gen_length and row[4:] == [EOS] * (task.gen_length - 4)
    assert response_moves([*row[:5], 4, *row[6:]]) is None
    assert path_key([4, PAD, EOS, 5]) == "U_"
    assert response_moves([4] * task.gen_length) == "U" * task.gen_length
    with pytest.raises(ValueError):
        moves_to_response("U" * (task.gen_length + 1), task.gen_length)


# ------------------------------------------------------------------------------------------------ registry


def test_registry_and_options():
    assert TASKS["maze"] is MazeTask
    task = get_task("maze", size=5, extra_openings=6)
    assert isinstance(task, MazeTask) and task.name == "maze"
    assert (task.size, task.gen_length, task.prompt_length, task.mask_token_id) == (5, 24, 26, MASK)
    default = MazeTask()
    assert (default.size, default.gen_length, default.prompt_length, default.vocab_size) == (4, 16, 17, 56)
    for bad in ({"size": 1}, {"extra_openings": 10}, {"p_shortest_demo": 1.5}, {"goal_bias": -1}, {"min_distance": 0}):
        with pytest.raises(ValueError):
            MazeTask(**bad)

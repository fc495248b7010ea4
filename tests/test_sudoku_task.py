"""The built-in-vocabulary 4x4 Sudoku token task: prompts, splits, demonstrations, reward and registry."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dtm.tasks import TASKS, get_task
from dtm.tasks import sudoku_grids as sg
from dtm.tasks.sudoku import DIGIT0, EOS, MASK, PAD, SEP, VOCAB_SIZE, SudokuTask


def slow_reward(response: list[int], meta: dict) -> float:
    """Reference: 2 x (empty cells whose token is the solution digit) / (empty cells)."""
    empty = [i for i in range(16) if meta["puzzle"][i] == 0]
    right = sum(response[i] == DIGIT0 + meta["solution"][i] for i in empty)
    return 2.0 * right / len(empty)


def test_prompt_format_and_meta():
    task = SudokuTask()
    batch = task.prompts(50, split="train", seed=0)
    assert batch.ids.shape == (50, 17) and batch.attention_mask.bool().all()
    assert (batch.ids[:, -1] == SEP).all()
    cells = batch.ids[:, :16] - DIGIT0
    assert ((cells >= 0) & (cells <= 4)).all()
    for row, meta in zip(cells.tolist(), batch.meta, strict=True):
        assert row == meta["puzzle"]
        assert sg.solve(tuple(row)) == tuple(meta["solution"])
        assert 6 <= row.count(0) <= 10
    assert task.vocab_size == VOCAB_SIZE == 9 and task.mask_token_id == MASK and task.gen_length == 16


def test_prompts_deterministic_and_answer_disjoint():
    task = SudokuTask()
    a = task.prompts(100, split="test", seed=3)
    assert torch.equal(a.ids, task.prompts(100, split="test", seed=3).ids)
    assert not torch.equal(a.ids, task.prompts(100, split="test", seed=4).ids)
    train = {tuple(m["solution"]) for seed in range(2) for m in task.prompts(200, "train", seed).meta}
    test = {tuple(m["solution"]) for seed in range(2) for m in task.prompts(200, "test", seed).meta}
    assert not train & test
    with pytest.raises(ValueError, match="split"):
        task.prompts(3, split="valid")


def test_demonstrations_noisy_but_decent():
    task = SudokuTask(p_noise=0.4)
    prompts = task.prompts(400, "train", seed=0)
    demos = task.demonstrations(prompts, torch.Generator().manual_seed(0))
    assert demos.shape == (400, 16)
    puzzle = torch.tensor([m["puzzle"] for m in prompts.meta])
    solution = torch.tensor([m["solution"] for m in prompts.meta])
    assert torch.equal(demos[puzzle > 0], (puzzle + DIGIT0)[puzzle > 0])  # givens copied
    digits = demos - DIGIT0
    assert ((digits >= 1) & (digits <= 4)).all()
    wrong = (digits != solution)[puzzle == 0].float().mean().item()
    assert abs(wrong - 0.75 * 0.4) < 0.04
    correct = task.is_correct(demos, prompts.meta).float().mean().item()
    assert 0.01 < correct < 0.5  # decent but imperfect
    assert torch.equal(demos, task.demonstrations(prompts, torch.Generator().manual_seed(0)))
    exact = SudokuTask(p_noise=0.0).demonstrations(prompts, torch.Generator().manual_seed(0))
    assert task.is_correct(exact, prompts.meta).all()
    assert torch.allclose(task.reward(exact, prompts.meta), torch.full((400,), 2.0))


def test_reward_cases_and_padding():
    task = SudokuTask(gen_length=18)
    meta = [{"puzzle": sg.from_string("0030340241202040"), "solution": sg.from_string("1234341241232341")}]
    meta = [{k: list(v) for k, v in meta[0].items()}] * 4
    solution = torch.tensor(meta[0]["solution"]) + DIGIT0
    rows = torch.stack([torch.cat([solution, torch.tensor([EOS, EOS])]) for _ in range(4)])
    rows[1, 0] = DIGIT0 + 2  # one empty cell wrong
    rows[2, 2] = DIGIT0 + 1  # a given changed: not in the reward, but not correct
    rows[3, 17] = PAD  # bad padding
    assert task.reward(rows, meta).tolist() == pytest.approx([2.0, 2.0 * 6 / 7, 2.0, 2.0])
    assert task.is_correct(rows, meta).tolist() == [True, False, False, False]
    assert task.cell_accuracy(rows, meta).tolist() == pytest.approx([1.0, 6 / 7, 1.0, 1.0])
    assert task.render(rows[0].tolist()) == "1234341241232341.."
    assert task.render([PAD, MASK, SEP, EOS, 99, -1]) == "_?|.##"


@settings(max_examples=40, deadline=None, database=None)
@given(data=st.data(), n=st.integers(0, 5), dtype=st.sampled_from([torch.int64, torch.int32, torch.int16]))
def test_reward_never_raises_on_arbitrary_ints(data, n, dtype):
    task = SudokuTask()
    bound = {torch.int64: 2**62, torch.int32: 2**31 - 1, torch.int16: 2**15 - 1}[dtype]
    values = st.one_of(st.integers(-3, VOCAB_SIZE + 3), st.integers(-bound, bound))
    rows = data.draw(st.lists(st.lists(values, min_size=16, max_size=16), min_size=n, max_size=n))
    responses = torch.tensor(rows, dtype=dtype).reshape(n, 16)
    prompts = task.prompts(n, "test", seed=data.draw(st.integers(0, 100)))
    rewards = task.reward(responses, prompts.meta)
    assert rewards.shape == (n,) and torch.isfinite(rewards).all()
    assert ((rewards >= 0) & (rewards <= 2)).all()
    assert rewards.tolist() == pytest.approx([slow_reward(r, m) for r, m in zip(rows, prompts.meta, strict=True)])
    assert task.is_correct(responses, prompts.meta).shape == (n,)


def test_constructor_checks_and_registry():
    with pytest.raises(ValueError, match="gen_length"):
        SudokuTask(gen_length=15)
    with pytest.raises(ValueError, match="p_noise"):
        SudokuTask(p_noise=1.5)
    with pytest.raises(ValueError, match="min_empty"):
        SudokuTask(min_empty=0)
    assert TASKS["sudoku_digits"] is SudokuTask
    task = get_task("sudoku_digits", gen_length=20)
    assert isinstance(task, SudokuTask) and task.gen_length == 20
    assert task.demonstrations(task.prompts(3), torch.Generator().manual_seed(0)).shape == (3, 20)

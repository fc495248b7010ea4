"""Replay buffer bookkeeping and reward scoring (failures, time limits)."""

from __future__ import annotations

import time

import torch

from dtm.tasks.increment import IncrementTask
from dtm.training.buffer import ReplayBuffer
from dtm.training.rewards import RewardScorer

TASK = IncrementTask()


def fake_rollout(calls: list):
    """Deterministic 'generation': one fixed completion per prompt (its digits, each copied)."""

    def rollout(prompts):
        calls.append(len(prompts))
        pad = torch.full((len(prompts), TASK.gen_length - TASK.num_digits), 3)
        responses = torch.cat([prompts.ids[:, : TASK.num_digits], pad], dim=1)
        return responses, TASK.reward(responses, prompts.meta), TASK.is_correct(responses, prompts.meta)

    return rollout


def make_buffer(num_prompts=6, completions=3, pool=20):
    return ReplayBuffer(TASK.prompts(pool, "train", seed=0), num_prompts, completions, TASK.gen_length, seed=1)


def test_rebuild_fills_every_slot_with_distinct_prompts():
    calls = []
    buffer = make_buffer()
    buffer.rebuild(fake_rollout(calls))
    assert calls == [18] and len(buffer) == 18
    assert len(set(buffer.prompt_index.tolist())) == 6
    # Rows of prompt j are j*K .. j*K + K - 1 and carry that prompt's rewards.
    meta = buffer.pool.select(buffer.prompt_rows()).meta
    torch.testing.assert_close(buffer.rewards, TASK.reward(buffer.responses, meta))


def test_refresh_replaces_oldest_prompts_round_robin():
    calls = []
    buffer = make_buffer()
    rollout = fake_rollout(calls)
    buffer.rebuild(rollout)
    before = buffer.prompt_index.clone()
    buffer.refresh(4, rollout)
    after = buffer.prompt_index.clone()
    assert calls[-1] == 4 * 3
    assert torch.equal(after[4:], before[4:]) and not set(after[:4].tolist()) & set(before.tolist())
    buffer.refresh(4, rollout)
    replaced = [4, 5, 0, 1]  # the oldest four slots, wrapping around
    assert torch.equal(buffer.prompt_index[[2, 3]], after[[2, 3]])
    assert not set(buffer.prompt_index[replaced].tolist()) & set(after.tolist())


def test_pool_is_reshuffled_when_exhausted():
    buffer = make_buffer(num_prompts=6, completions=1, pool=8)
    rollout = fake_rollout([])
    buffer.rebuild(rollout)
    for _ in range(5):
        buffer.refresh(6, rollout)
    assert buffer.prompt_index.max() < 8 and len(buffer) == 6


def test_state_dict_round_trip_continues_identically():
    rollout = fake_rollout([])
    a = make_buffer()
    a.rebuild(rollout)
    b = make_buffer()
    b.load_state_dict(a.state_dict())
    a.refresh(3, rollout)
    b.refresh(3, rollout)
    assert torch.equal(a.prompt_index, b.prompt_index) and torch.equal(a.responses, b.responses)
    ga, gb = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(a.sample(5, ga)[1], b.sample(5, gb)[1])


def test_stats_diversity_counts_distinct_completions():
    buffer = make_buffer(num_prompts=4, completions=3)
    buffer.rebuild(fake_rollout([]))
    assert buffer.stats()["diversity"] == 4 / 12  # the fake rollout repeats one completion per prompt
    buffer.responses[0, 0] = 0
    assert buffer.stats()["diversity"] == 5 / 12


def test_score_sums_functions_and_isolates_failures():
    responses = torch.arange(12).reshape(4, 3)
    meta = [{"i": i} for i in range(4)]

    def ones(r, m):
        return [1.0] * len(m)

    def picky(r, m):
        if any(x["i"] == 2 for x in m):
            raise RuntimeError("cannot score row 2")
        return [0.5 * x["i"] for x in m]

    def nan_for_first(r, m):
        return [float("nan") if x["i"] == 0 else 0.0 for x in m]

    scorer = RewardScorer([ones, picky, nan_for_first], timeout=600.0)
    scores = scorer(responses, meta)
    scorer.close()
    torch.testing.assert_close(scores.rewards, torch.tensor([1.0, 1.5, 1.0, 2.5]))
    assert (scores.errors, scores.timeouts) == (2, 0)


def test_a_hanging_reward_costs_its_time_limit_scores_zero_and_is_counted():
    """Rows 1 and 3 hang (an hour's sleep): the batch call and those two rows run out of time, the other rows score,
    and the whole batch takes about (1 + 2) limits, not an hour."""
    responses = torch.arange(12).reshape(4, 3)
    meta = [{"i": i} for i in range(4)]

    def hangs_on_odd_rows(r, m):
        if any(x["i"] % 2 for x in m):
            time.sleep(3600)
        return [1.0 + x["i"] for x in m]

    scorer = RewardScorer([hangs_on_odd_rows, lambda r, m: [0.5] * len(m)], timeout=0.3)
    start = time.monotonic()
    scores = scorer(responses, meta)
    assert time.monotonic() - start < 60
    torch.testing.assert_close(scores.rewards, torch.tensor([1.5, 0.5, 3.5, 0.5]))
    assert (scores.errors, scores.timeouts) == (0, 2)
    torch.testing.assert_close(scorer(responses[::2], meta[::2]).rewards, torch.tensor([1.5, 3.5]))  # worker is back
    scorer.close()

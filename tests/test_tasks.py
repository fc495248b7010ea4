"""Tests for dtm.tasks: the increment toy task (prompts, demonstrations, reward, tilted target) and get_task."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dtm.tasks import TASKS, get_task
from dtm.tasks.base import PromptBatch
from dtm.tasks.increment import DIGIT0, EOS, MASK, PAD, SEP, IncrementTask


def slow_reward(task: IncrementTask, response: list[int], digits: list[int]) -> float:
    """Per-row reference of the reward, written from the task's description."""
    n = task.num_digits
    out = response[:n]
    incremented = 0
    for token, digit in zip(out, digits, strict=True):
        if token == DIGIT0 + (digit + 1) % task.num_values:
            incremented += 1
        elif token != DIGIT0 + digit:
            return 0.0
    if any(token != EOS for token in response[n:]):
        return 0.0
    return incremented / n


def slow_valid(task: IncrementTask, response: list[int], digits: list[int]) -> bool:
    n = task.num_digits
    ok_digits = all(
        t in (DIGIT0 + d, DIGIT0 + (d + 1) % task.num_values) for t, d in zip(response[:n], digits, strict=True)
    )
    return ok_digits and all(t == EOS for t in response[n:])


def random_responses(task: IncrementTask, prompts: PromptBatch, generator: torch.Generator) -> torch.Tensor:
    """A mix of valid answers, answers with one kind of defect, and random garbage (also outside the vocabulary)."""
    n, g, d = len(prompts), task.gen_length, task.num_digits
    responses = task.demonstrations(prompts, generator).clone()
    kind = torch.randint(6, (n,), generator=generator)
    for i in range(n):
        k = int(kind[i])
        pos = int(torch.randint(d, (1,), generator=generator))
        digit = prompts.meta[i]["digits"][pos]
        if k == 1:  # a wrong digit (neither copied nor incremented)
            wrong = (digit + 2 + int(torch.randint(task.num_values - 2, (1,), generator=generator))) % task.num_values
            responses[i, pos] = DIGIT0 + wrong
        elif k == 2:  # a mask token left in the answer
            responses[i, int(torch.randint(g, (1,), generator=generator))] = MASK
        elif k == 3 and g > d:  # bad padding
            responses[i, d + int(torch.randint(g - d, (1,), generator=generator))] = int(
                torch.tensor([PAD, SEP, DIGIT0 + 1])[torch.randint(3, (1,), generator=generator)]
            )
        elif k in (3, 4):  # garbage ids, including ones outside the vocabulary
            responses[i] = torch.randint(-3, task.vocab_size + 5, (g,), generator=generator)
        elif k == 5:  # every digit incremented: the correct answer
            responses[i, :d] = DIGIT0 + (torch.tensor(prompts.meta[i]["digits"]) + 1) % task.num_values
    return responses


# ---------------------------------------------------------------------------------------------------- prompts


def test_prompts_deterministic_per_split_and_seed():
    task = IncrementTask()
    a = task.prompts(200, split="train", seed=5)
    b = task.prompts(200, split="train", seed=5)
    assert torch.equal(a.ids, b.ids) and a.meta == b.meta
    assert not torch.equal(a.ids, task.prompts(200, split="train", seed=6).ids)
    assert not torch.equal(a.ids, task.prompts(200, split="test", seed=5).ids)
    assert torch.equal(task.prompts(200, split="test", seed=5).ids, task.prompts(200, split="test", seed=5).ids)


def test_prompt_format_and_meta():
    task = IncrementTask()
    batch = task.prompts(300, split="test", seed=0)
    assert batch.ids.shape == (300, task.num_digits + 1)
    assert batch.attention_mask.shape == batch.ids.shape and batch.attention_mask.bool().all()
    assert (batch.ids[:, -1] == SEP).all()
    digits = batch.ids[:, :-1] - DIGIT0
    assert ((digits >= 0) & (digits < task.num_values)).all()
    assert [m["digits"] for m in batch.meta] == digits.tolist()
    assert len(batch) == 300


@pytest.mark.parametrize(("num_digits", "num_values"), [(6, 10), (3, 5), (4, 9), (2, 4)])
def test_train_and_test_prompts_disjoint(num_digits, num_values):
    task = IncrementTask(num_digits=num_digits, num_values=num_values, gen_length=num_digits + 1)
    train = {tuple(m["digits"]) for seed in range(3) for m in task.prompts(1500, split="train", seed=seed).meta}
    test = {tuple(m["digits"]) for seed in range(3) for m in task.prompts(1500, split="test", seed=seed).meta}
    assert train and test
    assert not train & test
    for digits in itertools.chain(train, test):
        assert all(0 <= v < num_values for v in digits)
    if num_values**num_digits <= 100:  # tiny digit spaces: both splits still cover their whole half
        assert len(train | test) == num_values**num_digits


def test_prompts_reject_unknown_split():
    with pytest.raises(ValueError, match="split"):
        IncrementTask().prompts(3, split="validation")


def test_constructor_checks():
    with pytest.raises(ValueError, match="gen_length"):
        IncrementTask(num_digits=6, gen_length=5)
    for p in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="p_increment"):
            IncrementTask(p_increment=p)
    task = IncrementTask(num_digits=3, num_values=7, gen_length=3)
    assert task.vocab_size == DIGIT0 + 7
    assert task.mask_token_id == MASK


# ---------------------------------------------------------------------------------------------- demonstrations


@pytest.mark.parametrize("p", [0.5, 0.2])
def test_demonstrations_valid_and_increment_with_p(p):
    task = IncrementTask(p_increment=p)
    prompts = task.prompts(4000, split="train", seed=0)
    responses = task.demonstrations(prompts, torch.Generator().manual_seed(0))
    assert responses.shape == (4000, task.gen_length)
    assert task.is_valid(responses, prompts.meta).all()
    digits = torch.tensor([m["digits"] for m in prompts.meta])
    out = responses[:, : task.num_digits] - DIGIT0
    incremented = out == (digits + 1) % task.num_values
    assert (incremented | (out == digits)).all()
    assert (responses[:, task.num_digits :] == EOS).all()
    freq = incremented.float().mean().item()
    sd = math.sqrt(p * (1 - p) / incremented.numel())
    assert abs(freq - p) < 5 * sd
    # the reward of a demonstration is its fraction of incremented digits
    assert torch.allclose(task.reward(responses, prompts.meta), incremented.float().mean(1))


def test_demonstrations_deterministic_in_generator():
    task = IncrementTask()
    prompts = task.prompts(100)
    a = task.demonstrations(prompts, torch.Generator().manual_seed(1))
    b = task.demonstrations(prompts, torch.Generator().manual_seed(1))
    c = task.demonstrations(prompts, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


# ------------------------------------------------------------------------------------------------------ reward


@pytest.mark.parametrize(
    "options",
    [{}, {"num_digits": 3, "num_values": 5, "gen_length": 6}, {"num_digits": 4, "num_values": 3, "gen_length": 4}],
)
def test_reward_matches_slow_reference(options):
    task = IncrementTask(**options)
    prompts = task.prompts(600, split="test", seed=2)
    generator = torch.Generator().manual_seed(3)
    responses = random_responses(task, prompts, generator)
    rewards = task.reward(responses, prompts.meta)
    want = [slow_reward(task, r.tolist(), m["digits"]) for r, m in zip(responses, prompts.meta, strict=True)]
    assert rewards.shape == (600,)
    assert rewards.dtype.is_floating_point
    assert rewards.tolist() == pytest.approx(want, abs=1e-6)
    # the mix really covers the cases: invalid (0), valid partial, and fully correct answers
    want_t = torch.tensor(want)
    assert (want_t == 0).sum() > 100 and ((want_t > 0) & (want_t < 1)).sum() > 50 and (want_t == 1).sum() > 50
    valid = task.is_valid(responses, prompts.meta)
    want_valid = [slow_valid(task, r.tolist(), m["digits"]) for r, m in zip(responses, prompts.meta, strict=True)]
    assert valid.tolist() == want_valid
    correct = task.is_correct(responses, prompts.meta)
    assert correct.tolist() == [w == 1.0 for w in want]
    assert torch.equal(correct, rewards == 1)


def test_reward_specific_cases():
    task = IncrementTask(num_digits=3, num_values=10, gen_length=5)
    meta = [{"digits": [1, 9, 5]}] * 7
    rows = [
        [6, 4, 10, EOS, EOS],  # all incremented (9 -> 0 wraps): 1
        [5, 13, 9, EOS, EOS],  # a pure copy: valid, reward 0
        [5, 4, 10, EOS, EOS],  # two of three incremented
        [6, 13, 9, EOS, PAD],  # bad padding
        [6, 13, MASK, EOS, EOS],  # a mask token
        [7, 4, 10, EOS, EOS],  # 1 -> 3 is neither a copy nor +1
        [6, 14, 10, EOS, EOS],  # 9 -> 10 is not a digit (no wrap to 0)
    ]
    got = task.reward(torch.tensor(rows), meta).tolist()
    assert got == pytest.approx([1.0, 0.0, 2 / 3, 0.0, 0.0, 0.0, 0.0])
    assert task.is_valid(torch.tensor(rows), meta).tolist() == [True, True, True, False, False, False, False]
    assert task.is_correct(torch.tensor(rows), meta).tolist() == [True] + [False] * 6
    assert task.render(rows[0]) == "206.."
    assert task.render([MASK, SEP, PAD]) == "?|_"


@settings(max_examples=60, deadline=None, database=None)
@given(
    data=st.data(),
    n=st.integers(0, 6),
    dtype=st.sampled_from([torch.int64, torch.int32, torch.int16]),
)
def test_reward_never_raises_on_arbitrary_ints(data, n, dtype):
    task = IncrementTask()
    bound = {torch.int64: 2**62, torch.int32: 2**31 - 1, torch.int16: 2**15 - 1}[dtype]
    values = st.one_of(st.integers(-5, task.vocab_size + 5), st.integers(-bound, bound))
    rows = data.draw(
        st.lists(st.lists(values, min_size=task.gen_length, max_size=task.gen_length), min_size=n, max_size=n)
    )
    responses = torch.tensor(rows, dtype=dtype).reshape(n, task.gen_length)
    prompts = task.prompts(n, split="test", seed=data.draw(st.integers(0, 1000)))
    rewards = task.reward(responses, prompts.meta)
    assert rewards.shape == (n,)
    assert torch.isfinite(rewards).all()
    assert ((rewards >= 0) & (rewards <= 1)).all()
    want = [slow_reward(task, r, m["digits"]) for r, m in zip(rows, prompts.meta, strict=True)]
    assert rewards.tolist() == pytest.approx(want, abs=1e-6)
    assert task.is_correct(responses, prompts.meta).tolist() == [w == 1.0 for w in want]


# ----------------------------------------------------------------------------------------------- tilted target


@pytest.mark.parametrize(("n", "a", "p"), [(4, 3.0, 0.5), (4, 3.0, 0.3), (3, -2.0, 0.7), (5, 6.0, 0.5), (2, 0.0, 0.4)])
def test_tilted_increment_probability_matches_brute_force(n, a, p):
    task = IncrementTask(num_digits=n, gen_length=n + 1, p_increment=p)
    prompt = task.prompts(1, split="train", seed=0)
    digits = torch.tensor(prompt.meta[0]["digits"])
    # all 2^n valid responses for this prompt, scored with the task's reward
    bumps = torch.tensor(list(itertools.product([0, 1], repeat=n)))
    responses = torch.cat([(digits + bumps) % task.num_values + DIGIT0, torch.full((2**n, 1), EOS)], dim=1)
    rewards = task.reward(responses, prompt.meta * 2**n).double()
    k = bumps.sum(1).double()
    assert torch.allclose(rewards, k / n)
    rewards = k / n  # exact, in float64
    p_demo = p**k * (1 - p) ** (n - k)
    assert p_demo.sum().item() == pytest.approx(1.0)
    weights = p_demo * torch.exp(a * rewards)
    rho = weights / weights.sum()
    brute = (rho * k / n).sum().item()  # P(a given digit is incremented) under rho_a, averaged over digits
    first_digit = (rho * bumps[:, 0]).sum().item()
    assert task.tilted_increment_probability(a) == pytest.approx(brute, rel=1e-9)
    assert task.tilted_increment_probability(a) == pytest.approx(first_digit, rel=1e-9)


def test_tilted_increment_probability_at_zero_is_p():
    for p in (0.1, 0.5, 0.9):
        assert IncrementTask(p_increment=p).tilted_increment_probability(0.0) == pytest.approx(p)


# -------------------------------------------------------------------------------------------------- registry


def test_get_task_builds_with_options():
    task = get_task("increment", num_digits=3, gen_length=4)
    assert isinstance(task, IncrementTask)
    assert task.num_digits == 3 and task.gen_length == 4
    assert "increment" in TASKS


def test_get_task_unknown_name_lists_available():
    with pytest.raises(ValueError) as info:
        get_task("incremnt")
    message = str(info.value)
    assert "'incremnt'" in message
    for name in TASKS:
        assert name in message

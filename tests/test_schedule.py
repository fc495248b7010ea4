"""Tests for dtm.training.schedule: the warmup -> constant -> decay learning-rate schedule and set_lr."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dtm.training.schedule import lr_at, set_lr


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def reference_lr(step: int, total: int, lr_max: float, lr_min: float, n_warmup: int, n_decay: int) -> float:
    """The schedule written from its spec, with the phase lengths given in steps (non-overlapping phases)."""
    assert n_warmup + n_decay <= total
    if step < n_warmup:
        return lr_max * (step + 1) / n_warmup
    if step >= total - n_decay:
        done = step - (total - n_decay) + 1  # decay steps taken so far, including this one
        return lr_max - (lr_max - lr_min) * done / n_decay
    return lr_max


def schedule(total: int, lr_max: float, lr_min: float, warmup: float, decay: float) -> list[float]:
    return [lr_at(step, total, lr_max, lr_min, warmup, decay) for step in range(total)]


@pytest.mark.parametrize(
    ("total", "warmup", "decay", "n_warmup", "n_decay"),
    [
        (100, 0.1, 0.2, 10, 20),
        (40, 0.25, 0.5, 10, 20),
        (1000, 0.05, 0.5, 50, 500),
        (10, 0.0, 0.3, 0, 3),
        (100, 0.07, 0.28, 7, 28),  # 0.07 * 100 == 7.000000000000001 in floating point: still 7 steps
        (50, 0.14, 0.56, 7, 28),
    ],
)
def test_matches_reference(total, warmup, decay, n_warmup, n_decay):
    lr_max, lr_min = 3e-3, 3e-4
    got = schedule(total, lr_max, lr_min, warmup, decay)
    want = [reference_lr(s, total, lr_max, lr_min, n_warmup, n_decay) for s in range(total)]
    assert got == pytest.approx(want, rel=1e-12, abs=0)


def test_warmup_rises_linearly_to_lr_max():
    total, lr_max = 200, 1.0
    lrs = schedule(total, lr_max, 0.1, warmup=0.1, decay=0.3)
    warm = lrs[:20]
    assert warm[0] == pytest.approx(lr_max / 20)
    assert warm[-1] == lr_max
    increments = [b - a for a, b in itertools.pairwise(warm)]
    assert all(d == pytest.approx(lr_max / 20) for d in increments)  # linear: constant increments
    assert max(lrs) == lr_max


def test_constant_middle_and_decay_ends_exactly_at_lr_min():
    total, lr_max, lr_min = 200, 2e-3, 2e-4
    lrs = schedule(total, lr_max, lr_min, warmup=0.1, decay=0.3)
    assert all(lr == lr_max for lr in lrs[20:140])
    decay = lrs[140:]
    assert decay[-1] == lr_min  # exactly, not approximately
    assert all(b < a for a, b in itertools.pairwise(decay))
    diffs = [a - b for a, b in itertools.pairwise(decay)]
    assert all(d == pytest.approx((lr_max - lr_min) / 60) for d in diffs)
    assert decay[0] == pytest.approx(lr_max - (lr_max - lr_min) / 60)


def test_no_warmup_starts_at_lr_max():
    lrs = schedule(50, 1.0, 0.5, warmup=0.0, decay=0.2)
    assert lrs[0] == 1.0
    assert all(lr == 1.0 for lr in lrs[:40])
    assert lrs[-1] == 0.5


def test_no_decay_ends_at_lr_max():
    lrs = schedule(50, 1.0, 0.5, warmup=0.2, decay=0.0)
    assert lrs[-1] == 1.0
    assert all(lr == 1.0 for lr in lrs[10:])
    assert lrs[0] == pytest.approx(0.1)


def test_no_warmup_no_decay_is_constant():
    assert schedule(17, 0.7, 0.1, warmup=0.0, decay=0.0) == [0.7] * 17


def test_full_decay_and_full_warmup():
    lrs = schedule(10, 1.0, 0.0, warmup=0.0, decay=1.0)
    assert lrs == pytest.approx([1 - (s + 1) / 10 for s in range(10)])
    assert lrs[-1] == 0.0
    lrs = schedule(10, 1.0, 0.0, warmup=1.0, decay=0.0)
    assert lrs == pytest.approx([(s + 1) / 10 for s in range(10)])


@pytest.mark.parametrize(("warmup", "decay"), [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (0.05, 0.5), (0.5, 0.5), (0.3, 0.7)])
def test_single_step_schedule(warmup, decay):
    lr_max, lr_min = 1e-3, 1e-4
    lr = lr_at(0, 1, lr_max, lr_min, warmup, decay)  # must not divide by zero
    assert math.isfinite(lr)
    assert lr_min <= lr <= lr_max
    if decay == 0:
        assert lr == lr_max  # a warmup of one step reaches lr_max at once
    if warmup == 0 and decay > 0:
        assert lr == lr_min  # the only step is the last decay step


def test_phase_lengths_are_fractions_rounded_up():
    """Count the warmup and decay steps the schedule actually takes for percentages of many totals."""
    for total in (1, 3, 7, 10, 25, 50, 64, 100, 333):
        for pct in range(0, 101, 7):
            frac = pct / 100
            want = ceil_div(pct * total, 100)
            warm = schedule(total, 1.0, 0.0, warmup=frac, decay=0.0)
            n_warm = round(1 / warm[0]) if warm[0] < 1 else (1 if frac > 0 else 0)
            assert n_warm == want, (total, frac)
            decay = schedule(total, 1.0, 0.0, warmup=0.0, decay=frac)
            assert sum(lr < 1.0 for lr in decay) == want, (total, frac)


@settings(max_examples=150, deadline=None, database=None)
@given(
    total=st.integers(1, 400),
    warmup_pct=st.integers(0, 100),
    decay_share=st.floats(0, 1),
    lr_max=st.floats(1e-6, 1.0),
    ratio=st.floats(0, 1),
)
def test_schedule_properties(total, warmup_pct, decay_share, lr_max, ratio):
    decay_pct = int((100 - warmup_pct) * decay_share)
    warmup, decay = warmup_pct / 100, decay_pct / 100
    lr_min = lr_max * ratio
    lrs = schedule(total, lr_max, lr_min, warmup, decay)
    n_warmup, n_decay = ceil_div(warmup_pct * total, 100), ceil_div(decay_pct * total, 100)
    assert all(math.isfinite(lr) and 0 <= lr <= lr_max * (1 + 1e-12) for lr in lrs)
    # warmup: linear from lr_max / n_warmup to lr_max
    warm = lrs[:n_warmup]
    assert warm == pytest.approx([lr_max * (s + 1) / n_warmup for s in range(n_warmup)], rel=1e-12)
    # after warmup the LR never drops below lr_min and never rises again
    after = lrs[n_warmup:]
    assert all(lr >= lr_min * (1 - 1e-12) for lr in after)
    assert all(b <= a for a, b in itertools.pairwise(after))
    if n_warmup + n_decay <= total:
        want = [reference_lr(s, total, lr_max, lr_min, n_warmup, n_decay) for s in range(total)]
        assert lrs == pytest.approx(want, rel=1e-9, abs=1e-15)
    if n_decay and n_warmup < total:
        assert lrs[-1] == lr_min  # exactly
    if not n_decay:
        assert lrs[-1] == pytest.approx(lr_max, rel=1e-12)


def test_set_lr_sets_every_param_group():
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.SGD([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.5}], lr=0.3)
    set_lr(optimizer, 0.25)
    assert [g["lr"] for g in optimizer.param_groups] == [0.25, 0.25]
    # the optimizer actually uses the new rate: p <- p - lr * grad with grad = 1
    (a.sum() + b.sum()).backward()
    optimizer.step()
    assert torch.allclose(a.detach(), torch.full((3,), 0.75))
    assert torch.allclose(b.detach(), torch.full((2,), 0.75))


def test_set_lr_on_adamw_param_groups():
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(
        [{"params": [model.weight], "lr": 1.0}, {"params": [model.bias], "lr": 2.0, "weight_decay": 0.0}]
    )
    for lr in (1e-3, 0.0, 5e-5):
        set_lr(optimizer, lr)
        assert all(g["lr"] == lr for g in optimizer.param_groups)

"""Summing pluggable reward functions without letting one bad completion stop training."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch

RewardFn = Callable[[torch.Tensor, Sequence[dict[str, Any]]], Any]
logger = logging.getLogger(__name__)


def _as_floats(values: Any, n: int, name: str) -> torch.Tensor:
    out = torch.as_tensor(values, dtype=torch.float32).flatten()
    if out.numel() != n:
        raise ValueError(f"reward function {name} returned {out.numel()} values for {n} completions")
    return out


def score(
    reward_fns: Sequence[RewardFn], responses: torch.Tensor, meta: Sequence[dict[str, Any]]
) -> tuple[torch.Tensor, int]:
    """Sum of every reward function over a batch; return (rewards ``[N]``, number of failed evaluations).

    Each function is called once on the whole batch. If that raises, it is called row by row and each row that raises
    (or returns a non-finite value) scores 0 for that function and is counted as an error.
    """
    n = responses.shape[0]
    total = torch.zeros(n)
    errors = 0
    for fn in reward_fns:
        name = getattr(fn, "__name__", type(fn).__name__)
        try:
            values = _as_floats(fn(responses, meta), n, name)
        except Exception as e:  # a reward must never kill training; fall back to per-row scoring
            logger.warning("reward function %s failed on a batch (%s); scoring row by row", name, e)
            values = torch.zeros(n)
            for i in range(n):
                try:
                    values[i] = _as_floats(fn(responses[i : i + 1], meta[i : i + 1]), 1, name)[0]
                except Exception:
                    errors += 1
                    values[i] = 0.0
        bad = ~torch.isfinite(values)
        errors += int(bad.sum())
        total += values.masked_fill(bad, 0.0)
    return total, errors

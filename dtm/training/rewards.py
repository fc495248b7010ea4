"""Summing pluggable reward functions without letting one bad or stuck completion stop training.

The reward functions run in a worker process (:class:`dtm.timelimit.Worker`) under a hard time limit, so a reward that
hangs (a checker stuck in SymPy, a user function waiting forever) costs at most its limit and never stalls the step.
Each function is called once on the whole batch, with ``timeout`` seconds for it. If that raises or runs out of time,
the function is called row by row, each row with ``timeout`` seconds: a row that raises (or returns a non-finite
value) scores 0 for that function and counts as an error, a row still running at its limit scores 0 and counts as a
time-out. A batch therefore costs at most ``(rows + 1) * timeout`` seconds per function. A reward function must score
each completion on its own (the row-by-row fallback gives the same numbers as the batch call). Limited calls inside
a reward function (math-verify's) that run out of time count as time-outs too.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from dtm.timelimit import TimeLimitError, Worker, expired_calls

RewardFn = Callable[[torch.Tensor, Sequence[dict[str, Any]]], Any]
logger = logging.getLogger(__name__)


@dataclass
class Scores:
    """Summed rewards ``[N]`` of a batch, and how many evaluations failed or ran out of time."""

    rewards: torch.Tensor
    errors: int
    timeouts: int


def _as_floats(values: Any, n: int, name: str) -> torch.Tensor:
    out = torch.as_tensor(values, dtype=torch.float32).flatten()
    if out.numel() != n:
        raise ValueError(f"reward function {name} returned {out.numel()} values for {n} completions")
    return out


def _name(fn: RewardFn) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


def _evaluate(
    reward_fns: Sequence[RewardFn], index: int, responses: torch.Tensor, meta: Sequence[dict[str, Any]]
) -> tuple[torch.Tensor, int]:
    """In the worker: one function's rewards for a batch, and the limited calls inside it that ran out of time."""
    before = expired_calls()
    values = _as_floats(reward_fns[index](responses, meta), len(meta), _name(reward_fns[index]))
    return values, expired_calls() - before


class RewardScorer:
    """The sum of ``reward_fns`` over a batch, each under a hard ``timeout`` (seconds) per call (module docstring).

    The worker process is forked on the first call and lives until :meth:`close`; responses reach it on the CPU.
    """

    def __init__(self, reward_fns: Sequence[RewardFn], timeout: float) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout}")
        self.reward_fns = list(reward_fns)
        self.timeout = timeout
        self.worker = Worker(functools.partial(_evaluate, self.reward_fns))

    def __call__(self, responses: torch.Tensor, meta: Sequence[dict[str, Any]]) -> Scores:
        responses = responses.cpu()
        n = responses.shape[0]
        total = torch.zeros(n)
        errors = timeouts = 0
        for index, fn in enumerate(self.reward_fns):
            try:
                values, inner = self.worker.call(index, responses, list(meta), timeout=self.timeout)
                timeouts += inner
            except Exception as e:  # a reward must never kill training; fall back to per-row scoring
                logger.warning("reward function %s failed on a batch (%s); scoring row by row", _name(fn), e)
                values = torch.zeros(n)
                for i in range(n):
                    try:
                        row, inner = self.worker.call(index, responses[i : i + 1], [meta[i]], timeout=self.timeout)
                        values[i], timeouts = row[0], timeouts + inner
                    except TimeLimitError:
                        timeouts += 1
                    except Exception:
                        errors += 1
            bad = ~torch.isfinite(values)
            errors += int(bad.sum())
            total += values.masked_fill(bad, 0.0)
        return Scores(total, errors, timeouts)

    def close(self) -> None:
        """Stop the worker process."""
        self.worker.close()

"""The replay buffer: P prompts x K teacher completions with their rewards.

Prompts come from a pool in a seeded order. ``refresh`` replaces the oldest prompts (round robin) with new ones from
the pool and regenerates their completions; ``rebuild`` replaces them all. Scoring and generation are callbacks, so
the buffer only keeps the bookkeeping.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from dtm.tasks.base import PromptBatch

RolloutFn = Callable[[PromptBatch], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


class ReplayBuffer:
    """``num_prompts`` prompts, ``completions`` rollouts each; rows of prompt ``j`` are ``j*K .. j*K + K - 1``."""

    def __init__(self, pool: PromptBatch, num_prompts: int, completions: int, gen_length: int, seed: int) -> None:
        if num_prompts > len(pool):
            raise ValueError(f"buffer needs {num_prompts} prompts but the prompt pool holds only {len(pool)}")
        self.pool = pool
        self.num_prompts = num_prompts
        self.completions = completions
        self.gen_length = gen_length
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(len(pool), generator=self.generator)
        self.cursor = 0
        self.oldest = 0
        self.prompt_index = torch.empty(0, dtype=torch.long)
        self.responses = torch.empty(0, dtype=torch.long)
        self.rewards = torch.empty(0)
        self.correct = torch.empty(0, dtype=torch.bool)

    def __len__(self) -> int:
        return self.responses.shape[0]

    def _next_prompts(self, n: int) -> torch.Tensor:
        """Next ``n`` pool indices in the seeded order, reshuffling when the pool is exhausted."""
        out = []
        while n > 0:
            if self.cursor == len(self.order):
                self.order = torch.randperm(len(self.pool), generator=self.generator)
                self.cursor = 0
            take = min(n, len(self.order) - self.cursor)
            out.append(self.order[self.cursor : self.cursor + take])
            self.cursor += take
            n -= take
        return torch.cat(out)

    def _fill(self, slots: torch.Tensor, rollout: RolloutFn) -> None:
        """Put fresh prompts into prompt ``slots`` and regenerate their completions."""
        indices = self._next_prompts(len(slots))
        prompts = self.pool.select(indices.repeat_interleave(self.completions))
        responses, rewards, correct = rollout(prompts)
        rows = (slots[:, None] * self.completions + torch.arange(self.completions)).flatten()
        self.prompt_index[slots] = indices
        self.responses[rows] = responses
        self.rewards[rows] = rewards.float()
        self.correct[rows] = correct

    def rebuild(self, rollout: RolloutFn) -> None:
        """Fill every slot with new prompts (at the start and at each phase boundary)."""
        total = self.num_prompts * self.completions
        self.prompt_index = torch.zeros(self.num_prompts, dtype=torch.long)
        self.responses = torch.zeros(total, self.gen_length, dtype=torch.long)
        self.rewards = torch.zeros(total)
        self.correct = torch.zeros(total, dtype=torch.bool)
        self.oldest = 0
        self._fill(torch.arange(self.num_prompts), rollout)

    def refresh(self, num_prompts: int, rollout: RolloutFn) -> None:
        """Replace the ``num_prompts`` oldest prompts with new ones (round robin over slots)."""
        slots = (self.oldest + torch.arange(min(num_prompts, self.num_prompts))) % self.num_prompts
        self.oldest = int((self.oldest + len(slots)) % self.num_prompts)
        self._fill(slots, rollout)

    def sample(
        self, n: int, generator: torch.Generator
    ) -> tuple[PromptBatch, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n`` completions drawn uniformly with replacement: (prompts, responses, rewards, buffer rows)."""
        rows = torch.randint(len(self), (n,), generator=generator)
        prompts = self.pool.select(self.prompt_index[rows // self.completions])
        return prompts, self.responses[rows], self.rewards[rows], rows

    def group_rewards(self) -> torch.Tensor:
        """Rewards as ``[prompts, completions]``: row j holds the K completions of buffer prompt j."""
        return self.rewards.view(self.num_prompts, self.completions)

    def stats(self) -> dict[str, float]:
        """Reward mean/std, fraction correct and diversity (distinct completions / total) of the buffer."""
        distinct = len({(int(p), tuple(r)) for p, r in zip(self.prompt_rows(), self.responses.tolist(), strict=True)})
        return {
            "reward_mean": self.rewards.mean().item(),
            "reward_std": self.rewards.std(unbiased=False).item(),
            "frac_correct": self.correct.float().mean().item(),
            "diversity": distinct / len(self),
        }

    def prompt_rows(self) -> torch.Tensor:
        return self.prompt_index.repeat_interleave(self.completions)

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.get_state(),
            "order": self.order,
            "cursor": self.cursor,
            "oldest": self.oldest,
            "prompt_index": self.prompt_index,
            "responses": self.responses,
            "rewards": self.rewards,
            "correct": self.correct,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.order = state["order"]
        self.cursor = int(state["cursor"])
        self.oldest = int(state["oldest"])
        self.prompt_index = state["prompt_index"]
        self.responses = state["responses"]
        self.rewards = state["rewards"]
        self.correct = state["correct"]

"""A toy task with a known tilted target: add one to every digit.

Prompt: ``num_digits`` digits then ``SEP``. Response: ``num_digits`` digits then ``EOS`` padding. The demonstrations
(pretraining data) are noisy: each digit is incremented with probability ``p_increment`` and copied otherwise, so
the base model is diverse and rarely fully correct.

Reward, in [0, 1]: 0 unless every response digit is its prompt digit or that digit plus one (mod ``num_values``) and
the padding is EOS; otherwise the fraction of incremented digits (1 exactly for the correct answer).

For a base model equal to the demonstration distribution the tilted target rho_a ∝ p · exp(a r) is known in closed
form: digits stay independent and each is incremented with probability sigmoid(logit(p_increment) + a / n). Tests
use this to check the DTM trainer end to end.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from dtm.tasks.base import PromptBatch

PAD, MASK, SEP, EOS = 0, 1, 2, 3
DIGIT0 = 4
SPLIT_PARITY = {"train": 0, "test": 1}


class IncrementTask:
    """Increment ``num_digits`` digits from ``0..num_values-1``; responses are padded to ``gen_length`` with EOS."""

    name = "increment"
    mask_token_id = MASK

    def __init__(
        self, num_digits: int = 6, num_values: int = 10, gen_length: int = 8, p_increment: float = 0.5
    ) -> None:
        if gen_length < num_digits:
            raise ValueError(f"gen_length {gen_length} is shorter than num_digits {num_digits}")
        if not 0 < p_increment < 1:
            raise ValueError(f"p_increment must be in (0, 1), got {p_increment}")
        self.num_digits = num_digits
        self.num_values = num_values
        self.gen_length = gen_length
        self.p_increment = p_increment
        self.vocab_size = DIGIT0 + num_values

    def prompts(self, n: int, split: str = "train", seed: int = 0) -> PromptBatch:
        """``n`` prompts, deterministic in (split, seed); train and test prompts are disjoint (digit-sum parity)."""
        if split not in SPLIT_PARITY:
            raise ValueError(f"split must be one of {sorted(SPLIT_PARITY)}, got {split!r}")
        g = torch.Generator().manual_seed(2 * seed + SPLIT_PARITY[split])
        digits = torch.randint(self.num_values, (n, self.num_digits), generator=g)
        # Flip the first digit's parity where needed: with an even num_values this always fixes the sum's parity.
        wrong = digits.sum(1) % 2 != SPLIT_PARITY[split]
        digits[wrong, 0] = (digits[wrong, 0] + 1) % self.num_values
        if self.num_values % 2:
            wrong = digits.sum(1) % 2 != SPLIT_PARITY[split]
            digits[wrong, 0] = (digits[wrong, 0] + 1) % self.num_values
        ids = torch.cat([digits + DIGIT0, torch.full((n, 1), SEP)], dim=1)
        return PromptBatch(ids, torch.ones_like(ids), [{"digits": row.tolist()} for row in digits])

    def demonstrations(self, prompts: PromptBatch, generator: torch.Generator) -> torch.Tensor:
        """Each digit incremented with probability ``p_increment``, else copied; EOS padding."""
        digits = prompts.ids[:, : self.num_digits] - DIGIT0
        bump = (torch.rand(digits.shape, generator=generator) < self.p_increment).long()
        pad = torch.full((len(prompts), self.gen_length - self.num_digits), EOS)
        return torch.cat([(digits + bump) % self.num_values + DIGIT0, pad], dim=1)

    def parse(self, responses: torch.Tensor, meta: Sequence[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(valid per row, incremented per digit)."""
        digits = torch.tensor([m["digits"] for m in meta], dtype=torch.long).reshape(len(meta), self.num_digits)
        out = responses[:, : self.num_digits] - DIGIT0
        copied = out == digits
        incremented = out == (digits + 1) % self.num_values
        padded = (responses[:, self.num_digits :] == EOS).all(dim=1)
        return (copied | incremented).all(dim=1) & padded, incremented

    def reward(self, responses: torch.Tensor, meta: Sequence[dict[str, Any]]) -> torch.Tensor:
        valid, incremented = self.parse(responses, meta)
        return torch.where(valid, incremented.float().mean(dim=1), torch.zeros(len(meta)))

    def is_valid(self, responses: torch.Tensor, meta: Sequence[dict[str, Any]]) -> torch.Tensor:
        return self.parse(responses, meta)[0]

    def is_correct(self, responses: torch.Tensor, meta: Sequence[dict[str, Any]]) -> torch.Tensor:
        return self.reward(responses, meta) == 1.0

    def tilted_increment_probability(self, a: float) -> float:
        """P(a digit is incremented) under rho_a ∝ p_demo · exp(a r) (valid responses only; see module doc)."""
        logit = math.log(self.p_increment / (1 - self.p_increment)) + a / self.num_digits
        return 1 / (1 + math.exp(-logit))

    def render(self, ids: Sequence[int]) -> str:
        names = {PAD: "_", MASK: "?", SEP: "|", EOS: "."}
        return "".join(names.get(int(i), str(int(i) - DIGIT0)) for i in ids)

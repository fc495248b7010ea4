"""The task interface: prompts with the metadata their reward needs, and a batched reward that never raises."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch


@dataclass
class PromptBatch:
    """Left-padded prompt token ids ``[N, P]``, their attention mask, and one metadata dict per prompt."""

    ids: torch.Tensor
    attention_mask: torch.Tensor
    meta: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return self.ids.shape[0]

    def select(self, index: Sequence[int] | torch.Tensor) -> PromptBatch:
        index = torch.as_tensor(index, dtype=torch.long)
        return PromptBatch(self.ids[index], self.attention_mask[index], [self.meta[i] for i in index.tolist()])


class TokenTask(Protocol):
    """A task over a built-in token vocabulary (used with the built-in model).

    ``reward(responses, meta)`` scores ``[N, G]`` response token ids and returns ``[N]`` floats; ``is_correct`` says
    which responses fully solve their prompt (for "fraction correct" metrics).
    """

    name: str
    vocab_size: int
    mask_token_id: int
    gen_length: int

    def prompts(self, n: int, split: str, seed: int) -> PromptBatch: ...

    def demonstrations(self, prompts: PromptBatch, generator: torch.Generator) -> torch.Tensor: ...

    def reward(self, responses: torch.Tensor, meta: Sequence[dict[str, Any]]) -> torch.Tensor: ...

    def is_correct(self, responses: torch.Tensor, meta: Sequence[dict[str, Any]]) -> torch.Tensor: ...

    def render(self, ids: Sequence[int]) -> str: ...

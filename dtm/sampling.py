"""Rollouts: SAR decoding of a prompt batch in chunks, with the settings of one ``SamplingConfig``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from dtm.config import check
from dtm.diffusion.sampler import generate
from dtm.models.base import DiffusionLM
from dtm.tasks.base import PromptBatch


@dataclass
class SamplingConfig:
    """SAR decoding settings. ``steps`` is the total number of rounds over the whole response.

    ``prefix_cache`` turns on approximate prefix caching of keys and values (see :mod:`dtm.diffusion.sampler`): faster
    rollouts, outputs not identical to the uncached sampler. It needs a model that accepts ``past_key_values``.
    """

    gen_length: int = 8
    block_length: int = 4
    steps: int = 8
    temperature: float = 1.0
    remasking: Literal["low_confidence", "random"] = "low_confidence"
    batch_size: int = 256
    prefix_cache: bool = False

    def __post_init__(self) -> None:
        check(self.gen_length > 0, "gen_length", f"must be positive, got {self.gen_length}")
        check(
            self.block_length > 0 and self.gen_length % self.block_length == 0,
            "block_length",
            f"must divide gen_length {self.gen_length}, got {self.block_length}",
        )
        blocks = self.gen_length // max(self.block_length, 1)
        check(self.steps >= blocks, "steps", f"must be >= the number of blocks {blocks}, got {self.steps}")
        check(self.temperature >= 0, "temperature", f"must be >= 0, got {self.temperature}")
        check(self.batch_size > 0, "batch_size", f"must be positive, got {self.batch_size}")


@torch.no_grad()
def rollout(
    model: DiffusionLM,
    prompts: PromptBatch,
    sampling: SamplingConfig,
    generator: torch.Generator | None = None,
    temperature: float | None = None,
) -> torch.Tensor:
    """Decode one response per prompt; return response ids ``[N, gen_length]`` on the CPU."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(prompts), sampling.batch_size):
        chunk = slice(start, start + sampling.batch_size)
        ids = prompts.ids[chunk].to(device)
        x = generate(
            model,
            ids,
            sampling.gen_length,
            sampling.block_length,
            sampling.steps,
            mask_token_id=model.mask_token_id,
            temperature=sampling.temperature if temperature is None else temperature,
            remasking=sampling.remasking,
            attention_mask=prompts.attention_mask[chunk].to(device),
            generator=generator,
            prefix_cache=sampling.prefix_cache,
        )
        out.append(x[:, ids.shape[1] :].cpu())
    model.train(was_training)
    return torch.cat(out)

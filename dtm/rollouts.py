"""Rollouts: SAR decoding of a prompt batch in chunks, with the settings of one ``SamplingConfig``."""

from __future__ import annotations

import torch

from dtm.config.sampling import SamplingConfig
from dtm.diffusion.sampler import DecodeStats, generate
from dtm.models.base import DiffusionLM
from dtm.tasks.base import PromptBatch


@torch.no_grad()
def rollout(
    model: DiffusionLM,
    prompts: PromptBatch,
    sampling: SamplingConfig,
    generator: torch.Generator | None = None,
    temperature: float | None = None,
    stats: DecodeStats | None = None,
) -> torch.Tensor:
    """Decode one response per prompt; return response ids ``[N, gen_length]`` on the CPU. ``stats`` (one row per
    prompt), if given, accumulates what each response cost to decode."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(prompts), sampling.decode_batch):
        chunk = slice(start, start + sampling.decode_batch)
        ids = prompts.ids[chunk].to(device)
        x = generate(
            model,
            ids,
            sampling.gen_length,
            sampling.block_length,
            sampling.decode_steps,
            mask_token_id=model.mask_token_id,
            temperature=sampling.temperature if temperature is None else temperature,
            remasking=sampling.remasking,
            attention_mask=prompts.attention_mask[chunk].to(device),
            generator=generator,
            threshold=sampling.threshold,
            cache=sampling.cache,
            cache_refresh=sampling.cache_refresh,
            stats=None if stats is None else stats.rows(chunk),
        )
        out.append(x[:, ids.shape[1] :].cpu())
    model.train(was_training)
    return torch.cat(out)

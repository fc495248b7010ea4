"""Semi-autoregressive (SAR) block decoding for masked diffusion LMs (LLaDA's sampler, batched).

The response of length G is split into G / B blocks decoded left to right. Block k gets ``steps_k`` rounds (the
``steps`` budget spread as evenly as possible over blocks); round j commits ``tokens_kj`` of the block's masked
positions, those with the highest confidence (``low_confidence``: the model's probability of the proposed token) or
uniformly random ones (``random``). Proposals are greedy at temperature 0 and Gumbel-max samples from
softmax(logits / T) otherwise. Logits are only computed for the current block.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

Remasking = Literal["low_confidence", "random"]
LogitsFn = Callable[..., torch.Tensor]


def steps_per_block(gen_length: int, block_length: int, steps: int) -> list[int]:
    """Spread ``steps`` over the blocks: earlier blocks get the remainder; no block gets more rounds than tokens."""
    if block_length <= 0 or gen_length <= 0 or gen_length % block_length:
        raise ValueError(f"block_length {block_length} must be positive and divide gen_length {gen_length}")
    num_blocks = gen_length // block_length
    if steps < num_blocks:
        raise ValueError(f"steps {steps} is fewer than the number of blocks {num_blocks} (gen_length / block_length)")
    base, extra = divmod(steps, num_blocks)
    return [min(base + (k < extra), block_length) for k in range(num_blocks)]


def tokens_per_step(block_length: int, steps: int) -> list[int]:
    """How many tokens each of ``steps`` rounds commits in a block: as even as possible, summing to the block."""
    base, extra = divmod(block_length, steps)
    return [base + (j < extra) for j in range(steps)]


def _propose(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """Proposed tokens: greedy at temperature 0, else Gumbel-max samples from softmax(logits / T)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    uniform = torch.rand(logits.shape, device=logits.device, dtype=logits.dtype, generator=generator)
    gumbel = -torch.log(-torch.log(uniform.clamp_min(1e-300)))
    return (logits / temperature + gumbel).argmax(dim=-1)


def _confidence(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[token], without materialising the full log-softmax."""
    return logits.gather(-1, tokens[..., None]).squeeze(-1) - logits.logsumexp(dim=-1)


@torch.no_grad()
def generate(
    model: LogitsFn,
    prompt_ids: torch.Tensor,
    gen_length: int,
    block_length: int,
    steps: int,
    *,
    mask_token_id: int,
    temperature: float = 0.0,
    remasking: Remasking = "low_confidence",
    attention_mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Decode ``gen_length`` tokens after each (left-padded) prompt; return ``[B, P + gen_length]`` token ids.

    ``model(input_ids, attention_mask=..., select=...)`` must return logits for the selected positions (see
    :class:`dtm.models.DiffusionLM`). ``attention_mask`` marks real prompt tokens (1) and padding (0); response
    positions are always attended. Every row commits the same number of tokens per round, so selection is one
    ``topk`` over the batch. The mask token is never proposed, so the result holds no mask token in the response.
    """
    if remasking not in ("low_confidence", "random"):
        raise ValueError(f"remasking must be 'low_confidence' or 'random', got {remasking!r}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    batch, prompt_len = prompt_ids.shape
    device = prompt_ids.device
    schedule = steps_per_block(gen_length, block_length, steps)

    x = torch.full((batch, prompt_len + gen_length), mask_token_id, dtype=prompt_ids.dtype, device=device)
    x[:, :prompt_len] = prompt_ids
    if attention_mask is not None:
        ones = torch.ones(batch, gen_length, dtype=attention_mask.dtype, device=device)
        attention_mask = torch.cat([attention_mask, ones], dim=1)

    for block, block_steps in enumerate(schedule):
        start = prompt_len + block * block_length
        select = torch.zeros_like(x, dtype=torch.bool)
        select[:, start : start + block_length] = True
        for count in tokens_per_step(block_length, block_steps):
            logits = model(x, attention_mask=attention_mask, select=select).view(batch, block_length, -1)
            logits[..., mask_token_id] = float("-inf")
            logits = logits.double()
            tokens = _propose(logits, temperature, generator)
            if remasking == "random":
                confidence = torch.rand(tokens.shape, device=device, dtype=logits.dtype, generator=generator)
            else:
                confidence = _confidence(logits, tokens)
            block_x = x[:, start : start + block_length]
            confidence = confidence.masked_fill(block_x != mask_token_id, float("-inf"))
            chosen = confidence.topk(count, dim=1).indices
            block_x.scatter_(1, chosen, tokens.gather(1, chosen))
    return x

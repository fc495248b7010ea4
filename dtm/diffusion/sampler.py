"""Semi-autoregressive (SAR) block decoding for masked diffusion LMs (LLaDA's sampler, batched).

The response of length G is split into G / B blocks decoded left to right. Block k gets ``steps_k`` rounds (the
``steps`` budget spread as evenly as possible over blocks); round j commits ``tokens_kj`` of the block's masked
positions, those with the highest confidence (``low_confidence``: the model's probability of the proposed token) or
uniformly random ones (``random``). Proposals are greedy at temperature 0 and Gumbel-max samples from
softmax(logits / T) otherwise. Logits are only computed for the current block.

Approximate prefix caching (``prefix_cache=True``): the first round of each block runs the whole sequence and keeps
the keys and values of the positions before the block (prompt and finished blocks) in a transformers cache; the
block's later rounds run only the block and the positions after it against those cached keys and values. Attention is
bidirectional, so the cached prefix is stale: it was computed when the block (and everything after it) was as at the
block's first round, and is refreshed only at the next block. It is exact for the first round of every block and
whenever the prefix's keys and values do not depend on later positions (e.g. a one-layer model).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from transformers import DynamicCache

from dtm.config.choices import Remasking

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


def _block_logits(
    model: LogitsFn,
    x: torch.Tensor,
    attention_mask: torch.Tensor | None,
    start: int,
    block_length: int,
    cache: DynamicCache | None,
) -> torch.Tensor:
    """Logits ``[B, block_length, V]`` of the block at ``start``.

    Without a cache the model runs on the whole sequence. With one, it runs on the positions the cache does not hold
    (all of them while the cache is empty, at a block's first round; afterwards ``x[:, start:]``), then the cache is
    cropped back to the ``start`` positions before the block, so it holds the prefix's keys and values and never
    grows.
    """
    cached = cache.get_seq_length() if cache is not None else 0
    select = torch.zeros(x.shape[0], x.shape[1] - cached, dtype=torch.bool, device=x.device)
    select[:, start - cached : start - cached + block_length] = True
    if cache is None:
        logits = model(x, attention_mask=attention_mask, select=select)
    else:
        logits = model(x[:, cached:], attention_mask=attention_mask, select=select, past_key_values=cache)
        cache.crop(start - x.shape[1])
    return logits.view(x.shape[0], block_length, -1)


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
    prefix_cache: bool = False,
) -> torch.Tensor:
    """Decode ``gen_length`` tokens after each (left-padded) prompt; return ``[B, P + gen_length]`` token ids.

    ``model(input_ids, attention_mask=..., select=...)`` must return logits for the selected positions (see
    :class:`dtm.models.DiffusionLM`). ``attention_mask`` marks real prompt tokens (1) and padding (0); response
    positions are always attended. Every row commits the same number of tokens per round, so selection is one
    ``topk`` over the batch. The mask token is never proposed, so the result holds no mask token in the response.

    ``prefix_cache=True`` turns on approximate prefix caching (see the module docstring); the model must then accept
    ``past_key_values`` (as :class:`dtm.models.DiffusionLM` does for transformers models with a key/value cache).
    """
    if remasking not in ("low_confidence", "random"):
        raise ValueError(f"remasking must be 'low_confidence' or 'random', got {remasking!r}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if prefix_cache and "past_key_values" not in inspect.signature(getattr(model, "forward", model)).parameters:
        raise ValueError("prefix_cache=True needs a model that accepts past_key_values (e.g. dtm.models.DiffusionLM)")
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
        cache = DynamicCache() if prefix_cache else None  # a fresh prefix at every block
        for count in tokens_per_step(block_length, block_steps):
            logits = _block_logits(model, x, attention_mask, start, block_length, cache)
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

"""Forward (masking) process and the masked states used for training.

Conventions: a batch holds prompts followed by responses of a fixed length G. Only response positions are ever
masked. All functions are pure: they take tensors and a ``torch.Generator`` and return new tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dtm.config.choices import Masking


@dataclass
class MaskedState:
    """A masked response batch.

    ``noisy``: the response with masked positions replaced by the mask token ``[B, G]``;
    ``masked``: which positions are masked ``[B, G]``;
    ``loss_mask``: positions whose loss is counted ``[B, G]`` (a subset of ``masked``, never empty per row);
    ``mask_prob``: the per-row masking probability t that produced the state, for 1/t weighting ``[B]``.
    """

    noisy: torch.Tensor
    masked: torch.Tensor
    loss_mask: torch.Tensor
    mask_prob: torch.Tensor

    def rows(self, index: slice | torch.Tensor) -> MaskedState:
        """The states of rows ``index``."""
        return MaskedState(self.noisy[index], self.masked[index], self.loss_mask[index], self.mask_prob[index])


def _rand(shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(shape, device=device, generator=generator)


def mask_tokens(
    response: torch.Tensor,
    mask_prob: torch.Tensor,
    mask_token_id: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward process q(x_t | x_1): mask each token of row b independently with probability ``mask_prob[b]``.

    In the convention where alpha_t is the unmasked fraction, ``mask_prob = 1 - alpha_t``. Returns ``(noisy, masked)``.
    """
    masked = _rand(tuple(response.shape), response.device, generator) < mask_prob[:, None]
    return response.masked_fill(masked, mask_token_id), masked


def uniform_masked_states(
    response: torch.Tensor,
    mask_token_id: int,
    generator: torch.Generator | None = None,
) -> MaskedState:
    """States of the masked-diffusion ELBO with the loss on every masked position.

    Per row draw k ~ Uniform{1..G} and mask a uniformly random subset of k positions (t = k / G). This is the
    discrete-time form of "t ~ U(0, 1], mask each token with probability t": weighting the loss by 1/t = G/k keeps it
    an unbiased ELBO, the weight stays bounded by G (continuous t near 0 gives unbounded 1/t), and no row is empty.
    """
    batch, length = response.shape
    k = torch.randint(1, length + 1, (batch,), device=response.device, generator=generator)
    rank = _rand((batch, length), response.device, generator).argsort(dim=1).argsort(dim=1)
    masked = rank < k[:, None]
    return MaskedState(response.masked_fill(masked, mask_token_id), masked, masked.clone(), k.float() / length)


def sar_masked_states(
    response: torch.Tensor,
    block_length: int,
    mask_token_id: int,
    generator: torch.Generator | None = None,
) -> MaskedState:
    """SAR-aligned masked states: the states semi-autoregressive decoding actually visits.

    Per row draw n ~ Uniform{1..G}; fully mask the last floor((n-1)/B) blocks; in the block before them (the active
    block) mask a uniformly random subset of size ((n-1) mod B) + 1; earlier blocks stay clean. The loss positions are
    the active block's masked positions. ``mask_prob`` is n / G.
    """
    batch, length = response.shape
    if block_length <= 0 or length % block_length:
        raise ValueError(f"block_length {block_length} must be positive and divide the response length {length}")
    device = response.device
    num_blocks = length // block_length
    n = torch.randint(1, length + 1, (batch,), device=device, generator=generator)
    full_blocks = (n - 1) // block_length
    active = num_blocks - 1 - full_blocks
    in_active = ((n - 1) % block_length) + 1

    position = torch.arange(length, device=device)
    block_of = position // block_length
    # A uniformly random subset of size k in the active block: the k positions with the smallest random keys.
    keys = _rand((batch, length), device, generator)
    keys = keys.masked_fill(block_of[None, :] != active[:, None], float("inf"))
    rank = keys.argsort(dim=1).argsort(dim=1)
    loss_mask = rank < in_active[:, None]
    masked = loss_mask | (block_of[None, :] > active[:, None])
    return MaskedState(response.masked_fill(masked, mask_token_id), masked, loss_mask, n.float() / length)


def masked_states(
    response: torch.Tensor,
    masking: Masking,
    block_length: int,
    mask_token_id: int,
    generator: torch.Generator | None = None,
) -> MaskedState:
    """Training states of either kind: :func:`sar_masked_states` (``"sar"``, blocks of ``block_length``) or
    :func:`uniform_masked_states` (``"uniform"``, where ``block_length`` is unused)."""
    if masking == "sar":
        return sar_masked_states(response, block_length, mask_token_id, generator)
    return uniform_masked_states(response, mask_token_id, generator)


def model_inputs(
    prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, response: torch.Tensor, select_response: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The inputs of one forward pass on prompts ``[B, P]`` followed by (partly masked) responses ``[B, G]``:
    ``input_ids = [prompt, response]``, ``select`` (the positions whose logits are computed: the response positions
    where ``select_response`` is True, never the prompt) and ``attention_mask`` (the prompt's padding mask, then every
    response position)."""
    input_ids = torch.cat([prompt_ids, response], dim=1)
    select = torch.cat([torch.zeros_like(prompt_ids, dtype=torch.bool), select_response], dim=1)
    attention = torch.cat([prompt_mask, torch.ones_like(response)], dim=1)
    return input_ids, select, attention

"""The model interface every part of the library talks to.

A masked diffusion LM maps token ids (and an optional attention mask) to logits of the unmasking posterior
pi(v | x_t, i). Most callers only need logits at a few positions (the current SAR block, the loss positions), and for a
126k-token vocabulary the output projection dominates memory, so the interface can compute logits for selected
positions only.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn
from transformers import Cache, PretrainedConfig


class DiffusionLM(nn.Module):
    """Wrap a Hugging Face model (or any module returning ``.logits``) as a masked diffusion LM.

    ``forward(input_ids, attention_mask=None, select=None)`` returns ``[batch, length, vocab]`` logits, or, when
    ``select`` (a boolean ``[batch, length]`` mask) is given, ``[n_selected, vocab]`` logits for the selected
    positions in row-major order. Selection runs the backbone on every position (attention is bidirectional) but
    applies the output projection only where needed.

    ``past_key_values`` (a transformers cache, e.g. ``DynamicCache``) holds keys and values of other positions: the
    backbone attends to them as well and appends the keys and values of ``input_ids`` to the cache. ``attention_mask``
    then covers the cached and the new positions, in that order. Position ids default to following the cached ones;
    ``position_ids`` overrides them (the sampler's dual cache runs a block that sits between cached positions).
    Without a cache none is built at all: transformers models default to ``use_cache=True``, which copies every
    layer's keys and values into a cache on each call (measured: ~7% of a sampler forward and ~15% of a training step
    on the built-in model).
    """

    def __init__(self, model: nn.Module, mask_token_id: int, shift_logits: bool = False) -> None:
        super().__init__()
        self.model = model
        self.mask_token_id = int(mask_token_id)
        self.shift_logits = shift_logits

    @property
    def config(self) -> PretrainedConfig:
        return self.model.config

    def enable_gradient_checkpointing(self) -> None:
        """Recompute each layer's activations in the backward pass instead of storing them: activation memory drops
        from O(layers) to O(1) layers for about one extra forward pass of compute. Outputs and gradients are
        unchanged."""
        if not getattr(self.model, "supports_gradient_checkpointing", False):
            raise ValueError(f"{type(self.model).__name__} does not support gradient checkpointing")
        self.model.activation_checkpointing_enable({"use_reentrant": False})

    def check_kv_cache(self) -> None:
        """ValueError unless the wrapped model can decode with a key/value cache: a transformers model whose forward
        takes ``past_key_values`` (a ``Cache``) and ``position_ids``, without shifted logits. (LLaDA's own modeling
        code, for one, takes neither a ``Cache`` nor position ids.)"""
        if self.shift_logits:
            raise ValueError(
                "a key/value cache is not supported for models with shifted logits (each position reads the output "
                "of the previous one, which a cached round does not recompute)"
            )
        parts = self._split()
        target = parts[0] if parts is not None else self.model
        parameters = inspect.signature(target.forward).parameters
        missing = [name for name in ("past_key_values", "position_ids") if name not in parameters]
        if missing:
            raise ValueError(
                f"{type(target).__name__}.forward takes no {' or '.join(missing)}: decoding with a key/value cache "
                "needs a transformers model with one (cache: none works with any model)"
            )

    def _split(self) -> tuple[nn.Module, nn.Module] | None:
        """Return (backbone, output head) when the wrapped model exposes them, else None."""
        head = self.model.get_output_embeddings() if hasattr(self.model, "get_output_embeddings") else None
        backbone = getattr(self.model, "get_decoder", lambda: None)()
        if head is None or backbone is None:
            return None
        return backbone, head

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        select: torch.Tensor | None = None,
        past_key_values: Cache | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if past_key_values is not None and self.shift_logits:
            # The first new position would read the output of the last cached position, which is not recomputed.
            raise ValueError("past_key_values is not supported for models with shifted logits")
        parts = self._split() if select is not None else None
        if parts is None:
            cache_kwargs = _cache_kwargs(self.model, past_key_values, position_ids)
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask, **cache_kwargs).logits
            if self.shift_logits:
                logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
            return logits if select is None else logits[select]
        backbone, head = parts
        cache_kwargs = _cache_kwargs(backbone, past_key_values, position_ids)
        hidden = backbone(input_ids=input_ids, attention_mask=attention_mask, **cache_kwargs).last_hidden_state
        if self.shift_logits:  # position i reads the output at i - 1 (position 0 keeps its own)
            rows, cols = select.nonzero(as_tuple=True)
            return head(hidden[rows, (cols - 1).clamp(min=0)])
        return head(hidden[select])


def _cache_kwargs(
    module: nn.Module, past_key_values: Cache | None, position_ids: torch.Tensor | None = None
) -> dict[str, Any]:
    """Cache arguments for a call of ``module``: the cache (and position ids) if one is given; else ``use_cache=False``
    for modules whose config would build one (other modules, e.g. a plain one returning ``.logits``, get no extra
    arguments)."""
    positions = {} if position_ids is None else {"position_ids": position_ids}
    if past_key_values is not None:
        return {"past_key_values": past_key_values, "use_cache": True, **positions}
    if getattr(getattr(module, "config", None), "use_cache", False):
        return {"use_cache": False, **positions}
    return positions


def input_tokens(args: tuple, kwargs: dict[str, Any]) -> int:
    """Tokens in one call of a :class:`DiffusionLM` (its ``input_ids``, by keyword or first positional), for the
    forward pre-hooks that count compute."""
    return (kwargs["input_ids"] if "input_ids" in kwargs else args[0]).numel()

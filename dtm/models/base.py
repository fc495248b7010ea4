"""The model interface every part of the library talks to.

A masked diffusion LM maps token ids (and an optional attention mask) to logits of the unmasking posterior
pi(v | x_t, i). Most callers only need logits at a few positions (the current SAR block, the loss positions), and for a
126k-token vocabulary the output projection dominates memory, so the interface can compute logits for selected
positions only.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PretrainedConfig


class DiffusionLM(nn.Module):
    """Wrap a Hugging Face model (or any module returning ``.logits``) as a masked diffusion LM.

    ``forward(input_ids, attention_mask=None, select=None)`` returns ``[batch, length, vocab]`` logits, or, when
    ``select`` (a boolean ``[batch, length]`` mask) is given, ``[n_selected, vocab]`` logits for the selected
    positions in row-major order. Selection runs the backbone on every position (attention is bidirectional) but
    applies the output projection only where needed.
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
    ) -> torch.Tensor:
        parts = self._split() if select is not None else None
        if parts is None:
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
            if self.shift_logits:
                logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
            return logits if select is None else logits[select]
        backbone, head = parts
        hidden = backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.shift_logits:  # position i reads the output at i - 1 (position 0 keeps its own)
            rows, cols = select.nonzero(as_tuple=True)
            return head(hidden[rows, (cols - 1).clamp(min=0)])
        return head(hidden[select])

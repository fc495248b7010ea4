"""Models: the :class:`DiffusionLM` interface, the built-in bidirectional Llama, and loading of any HF dLLM folder."""

from dtm.models.base import DiffusionLM
from dtm.models.loading import load_model, load_tokenizer, resolve_mask_token_id
from dtm.models.tiny import TinyModelConfig, build_tiny_model, save_model

__all__ = [
    "DiffusionLM",
    "TinyModelConfig",
    "build_tiny_model",
    "load_model",
    "load_tokenizer",
    "resolve_mask_token_id",
    "save_model",
]

"""Models: the :class:`DiffusionLM` interface and the built-in bidirectional Llama."""

from dtm.models.base import DiffusionLM
from dtm.models.tiny import TinyModelConfig, build_tiny_model, load_model, save_model

__all__ = ["DiffusionLM", "TinyModelConfig", "build_tiny_model", "load_model", "save_model"]

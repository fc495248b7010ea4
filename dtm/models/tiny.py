"""The built-in LLaDA-like model: a small bidirectional Llama (RMSNorm, SwiGLU, RoPE, no causal mask).

It is a plain transformers model, so everything that works on it (peft, accelerate, save/load) works the same way on
LLaDA-8B; the only difference from a causal Llama is ``is_causal=False``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from transformers import LlamaConfig, LlamaForCausalLM
from transformers.utils import logging as hf_logging

from dtm.config.model import TASK_RECORD, TinyModelConfig
from dtm.models.base import DiffusionLM


def build_tiny_model(cfg: TinyModelConfig) -> DiffusionLM:
    """Build a randomly initialised bidirectional Llama wrapped as a :class:`DiffusionLM`."""
    if not 0 <= cfg.mask_token_id < cfg.vocab_size:
        raise ValueError(f"mask_token_id {cfg.mask_token_id} is outside the vocabulary [0, {cfg.vocab_size})")
    if cfg.hidden_size % cfg.num_heads:
        raise ValueError(f"hidden_size {cfg.hidden_size} is not divisible by num_heads {cfg.num_heads}")
    hf_config = LlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_length,
        rope_theta=cfg.rope_theta,
        is_causal=False,
        tie_word_embeddings=False,
        mask_token_id=cfg.mask_token_id,
        pad_token_id=None,
        bos_token_id=None,
        eos_token_id=None,
    )
    return DiffusionLM(LlamaForCausalLM(hf_config), cfg.mask_token_id)


def save_model(model: DiffusionLM, path: str | Path, task: str | None = None, task_options: dict | None = None) -> None:
    """Save weights (safetensors) and config, with the mask token id, in a folder ``from_pretrained`` can read.
    ``task``: the task the model learnt, recorded in config.json (and kept by every model tuned from it) so that
    using the folder with another task is refused."""
    model.model.config.mask_token_id = model.mask_token_id
    if task is not None:
        setattr(model.model.config, TASK_RECORD, {"task": task, "task_options": task_options or {}})
    with quiet_progress():
        model.model.save_pretrained(str(path))


@contextmanager
def quiet_progress() -> Iterator[None]:
    """Hide transformers' per-file progress bars (noise for small local folders), restoring the previous setting."""
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()

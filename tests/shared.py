"""What several test modules share: the tiny model shape, a fresh tiny model, a one-phase DTM run config, and the
reader of a run's metrics."""

from __future__ import annotations

from pathlib import Path

import torch

from dtm.config.dtm import DTMConfig
from dtm.config.sampling import SamplingConfig
from dtm.models import TinyModelConfig, build_tiny_model
from dtm.models.base import DiffusionLM
from dtm.training.logging import read_metrics as logged_metrics

# The built-in model for the 14-token increment task, small enough for a CPU test to train it in seconds.
TINY = TinyModelConfig(vocab_size=14, hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128)


def tiny_model(seed: int = 0) -> DiffusionLM:
    """A randomly initialised TINY model, the same for the same seed."""
    torch.manual_seed(seed)
    return build_tiny_model(TINY)


def read_metrics(run_dir: Path) -> list[dict]:
    """The records of ``run_dir/metrics.jsonl``."""
    return logged_metrics(run_dir / "metrics.jsonl")


def one_phase_config(output_dir: Path, base_model: str | Path = "unused", **overrides) -> DTMConfig:
    """A DTM run of one phase (h = a_end = 1) of 2 steps on the increment task, a buffer of 8 prompts x 2 without
    refreshes, held-out evaluations on 8 prompts before and after: a complete run in a second or two."""
    values = dict(
        base_model=str(base_model),
        output_dir=str(output_dir),
        h=1.0,
        a_end=1.0,
        steps_per_h=2,
        buffer_prompts=8,
        buffer_completions=2,
        refresh_every=0,
        refresh_prompts=0,
        prompt_pool=16,
        micro_batch=8,
        eval_prompts=8,
        sampling=SamplingConfig(decode_batch=64),
    )
    return DTMConfig(**values | overrides)

"""What several test modules share: the tiny model shape, a fresh tiny model, and the reader of a run's metrics."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from dtm.models import TinyModelConfig, build_tiny_model
from dtm.models.base import DiffusionLM

# The built-in model for the 14-token increment task, small enough for a CPU test to train it in seconds.
TINY = TinyModelConfig(vocab_size=14, hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128)


def tiny_model(seed: int = 0) -> DiffusionLM:
    """A randomly initialised TINY model, the same for the same seed."""
    torch.manual_seed(seed)
    return build_tiny_model(TINY)


def read_metrics(run_dir: Path) -> list[dict]:
    """The records of ``run_dir/metrics.jsonl``."""
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]

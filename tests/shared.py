"""What several test modules share: the tiny model shape, a fresh tiny model, a one-phase DTM run config, the
reader of a run's metrics, and the chi-square check of sampled frequencies."""

from __future__ import annotations

import math
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


def chi2_threshold(df: int, z: float = 5.0) -> float:
    """Wilson-Hilferty approximation of the chi-square quantile at a standard-normal z (z = 5: p ~ 3e-7)."""
    c = 2.0 / (9.0 * df)
    return df * (1.0 - c + z * math.sqrt(c)) ** 3


def chi2_stat(observed: torch.Tensor, probs: torch.Tensor, min_expected: float = 5.0) -> float:
    """Pearson statistic; cells with expected count below ``min_expected`` are pooled into one."""
    total = observed.sum().double()
    expected = total * probs.double()
    small = expected < min_expected
    obs = torch.cat([observed.double()[~small], observed.double()[small].sum()[None]])
    exp = torch.cat([expected[~small], expected[small].sum()[None]])
    keep = exp > 0
    return float(((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum())


def chi2_accepts(observed: torch.Tensor, probs: torch.Tensor) -> bool:
    """Whether counts ``observed`` pass the chi-square test against ``probs`` at z = 5 (pooled small cells)."""
    df = int((observed.sum() * probs >= 5).sum())  # (#kept + 1 pooled) - 1
    return chi2_stat(observed, probs) < chi2_threshold(max(df, 1))

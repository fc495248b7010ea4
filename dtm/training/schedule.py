"""The optimizer of every training command (AdamW with the settings of :class:`dtm.config.optimizer.OptimizerSettings`)
and its learning-rate schedule: linear warmup -> constant -> linear decay to ``lr_min``, restarted every phase."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from dtm.config.optimizer import OptimizerSettings


def adamw(params: Iterable[torch.nn.Parameter], cfg: OptimizerSettings) -> torch.optim.AdamW:
    """AdamW over ``params`` at the peak learning rate of ``cfg``, with its betas, epsilon and weight decay."""
    return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)


def lr_at(step: int, total: int, lr_max: float, lr_min: float, warmup: float, decay: float) -> float:
    """Learning rate for optimizer step ``step`` (0-based) of a ``total``-step schedule.

    ``warmup`` and ``decay`` are fractions of ``total``, rounded up to whole steps. Warmup rises linearly from
    lr_max / n_warmup to lr_max; the decay falls linearly to exactly ``lr_min`` at the last step.
    """
    n_warmup = math.ceil(warmup * total - 1e-9)  # tolerance: 0.07 * 100 = 7.000000000000001 is 7 steps
    n_decay = math.ceil(decay * total - 1e-9)
    if step < n_warmup:
        return lr_max * (step + 1) / n_warmup
    decay_start = total - n_decay
    if n_decay == 0 or step < decay_start:
        return lr_max
    progress = (step - decay_start + 1) / n_decay
    return lr_min + (lr_max - lr_min) * (1.0 - min(progress, 1.0))  # exactly lr_min at progress 1


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr

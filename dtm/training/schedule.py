"""Learning-rate schedule: linear warmup -> constant -> linear decay to ``lr_min``, restarted every phase."""

from __future__ import annotations


def lr_at(step: int, total: int, lr_max: float, lr_min: float, warmup: float, decay: float) -> float:
    """Learning rate for optimizer step ``step`` (0-based) of a ``total``-step schedule.

    ``warmup`` and ``decay`` are fractions of ``total``. Warmup rises linearly from lr_max / n_warmup to lr_max; the
    decay falls linearly to exactly ``lr_min`` at the last step.
    """
    n_warmup = round(warmup * total)
    n_decay = round(decay * total)
    if step < n_warmup:
        return lr_max * (step + 1) / n_warmup
    decay_start = total - n_decay
    if n_decay == 0 or step < decay_start:
        return lr_max
    progress = (step - decay_start + 1) / n_decay
    return lr_max + (lr_min - lr_max) * min(progress, 1.0)


def set_lr(optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr

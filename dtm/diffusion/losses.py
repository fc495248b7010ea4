"""Losses: the masked-diffusion pretraining ELBO and the c-DTM tilt-matching loss with its control variates.

Every loss takes logits only at the positions it scores (``[N, V]``, N = number of loss positions in the batch) and
never builds a dense ``[batch, length, vocab]`` target or one-hot: for a target of the form
``c * q + 1{v = x} * (w - c)`` the cross-entropy splits into ``c * sum_v q(v) log p(v) + (w - c) * log p(x)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def position_weights(loss_mask: torch.Tensor) -> torch.Tensor:
    """Active-block normalisation as a weight per loss position, in ``loss_mask[loss_mask]`` order.

    Each row's loss is divided by its number of loss positions, then rows are averaged: weight = 1 / (B * n_b).
    """
    counts = loss_mask.sum(dim=1, keepdim=True).clamp_min(1)
    weights = (1.0 / (counts * loss_mask.shape[0])).expand_as(loss_mask)
    return weights[loss_mask]


def masked_diffusion_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    masked: torch.Tensor,
    mask_prob: torch.Tensor,
) -> torch.Tensor:
    """Masked-diffusion ELBO (pretraining / SFT): (1/B) sum_b (1 / (t_b G)) sum_{i masked} -log p_theta(x_b^i | x_t).

    ``logits``: ``[N, V]`` at the masked positions ``masked`` (``[B, G]``, row-major order); ``targets``: the clean
    tokens there ``[N]``; ``mask_prob``: t per row ``[B]``. With the 1/t weight the loss is an upper bound on the
    per-token negative log-likelihood.
    """
    batch, length = masked.shape
    dtype = torch.promote_types(logits.dtype, torch.float32)  # upcast half precision, keep float64
    nll = torch.nn.functional.cross_entropy(logits.to(dtype), targets, reduction="none")
    row_weight = (1.0 / (mask_prob * length * batch)).unsqueeze(1).expand_as(masked)[masked]
    return (nll * row_weight).sum()


def cdtm_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    targets: torch.Tensor,
    log_tilt: torch.Tensor,
    weights: torch.Tensor,
    c: float | torch.Tensor,
    shift: float = 0.0,
) -> torch.Tensor:
    """The c-DTM loss, summed over loss positions with ``weights``.

    For loss position i with clean token x = X_1^i and tilt w = exp(h r):
        target(v) = c * pi_a(v) + 1{v = x} (w - c)
        loss_i    = -sum_v target(v) log pi_theta(v) = -c sum_v pi_a(v) log pi_theta(v) - (w - c) log pi_theta(x)
    When the teacher's posteriors are the conditionals of the law its rollouts come from, the expected loss is
    minimised by the tilted posterior pi_{a+h} for every c, and c only changes the variance. A teacher whose
    posteriors pi_a differ from the conditionals pi~_a of its own decoding law moves the minimiser to
    pi~_{a+h} + (c / Z)(pi_a - pi~_a), Z = E[w | x_t]: only c = 0 targets the exact tilt of the rollouts' law (tested).

    ``student_logits``, ``teacher_logits``: ``[N, V]`` at the loss positions; ``targets``: ``[N]``; ``log_tilt``: h * r
    per position ``[N]``; ``weights``: per-position weights ``[N]`` (e.g. :func:`position_weights`); ``c``: one
    control variate, or one per position ``[N]`` (e.g. a per-prompt baseline, :func:`leave_one_out_log_mean_exp`).
    With c = 0 the teacher term vanishes and ``teacher_logits`` may be None (no teacher forward pass is needed).

    Numerical stability: w = exp(h r) overflows float32 once h r > 88. The whole loss is multiplied by exp(-shift),
    i.e. w -> exp(h r - shift) and c -> c exp(-shift): a positive constant factor that leaves the minimiser and the
    gradient direction unchanged. Pass ``shift = max(h r)`` (see :func:`tilt_shift`) for large tilts.
    """
    dtype = torch.promote_types(student_logits.dtype, torch.float32)  # upcast half precision, keep float64
    log_p = student_logits.to(dtype).log_softmax(dim=-1)
    log_p_x = log_p.gather(-1, targets[:, None]).squeeze(-1)
    scale = math.exp(-shift)
    w = torch.exp(log_tilt.to(dtype) - shift)
    if isinstance(c, torch.Tensor):
        c = c.to(dtype)
    per_position = -(w - c * scale) * log_p_x
    if isinstance(c, torch.Tensor) or c != 0:
        if teacher_logits is None:
            raise ValueError(f"teacher_logits are required when c != 0 (c = {c})")
        cross = (teacher_logits.to(dtype).softmax(dim=-1) * log_p).sum(dim=-1)
        per_position = per_position - c * scale * cross
    return (per_position * weights).sum()


def leave_one_out_log_mean_exp(log_values: torch.Tensor) -> torch.Tensor:
    """log((1 / (K - 1)) sum_{k != j} exp(v_k)) for every entry j of each row of ``log_values`` ``[P, K]`` (K >= 2).

    With v = h r over the K buffer completions of a prompt, exp of this is a per-prompt estimate of
    Z(prompt) = E[exp(h r) | prompt] that does not use completion j itself, so using it for completion j as a control
    variate (c_j) or as a divisor of its tilt weight keeps the per-prompt minimiser of the c-DTM loss: it is a
    constant given the prompt, independent of X_1 of completion j.
    """
    k = log_values.shape[1]
    if k < 2:
        raise ValueError(f"a leave-one-out mean needs at least 2 completions per prompt, got {k}")
    values = log_values.double()
    others = values[:, None, :].expand(-1, k, -1).masked_fill(torch.eye(k, dtype=torch.bool), -math.inf)
    return (others.logsumexp(dim=-1) - math.log(k - 1)).to(log_values.dtype)


def tilt_shift(log_tilt: torch.Tensor, threshold: float = 60.0) -> float:
    """A shift for :func:`cdtm_loss`: 0 while exp(h r) is safe in float32, else the batch maximum of h r."""
    top = float(log_tilt.max()) if log_tilt.numel() else 0.0
    return top if top > threshold else 0.0


def optimal_control_variate(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    log_tilt: torch.Tensor,
    weights: torch.Tensor,
) -> torch.Tensor:
    """Batch estimate of the variance-optimal control variate.

    The gradient w.r.t. student logits at one position is g(c) = w (p - e_x) + c (e_x - q) with p = pi_theta,
    q = pi_a, w = exp(h r). E||g(c)||^2 is quadratic in c and minimised by
        c* = -E[w <p - e_x, e_x - q>] / E[||e_x - q||^2],
    with <p - e_x, e_x - q> = p_x + q_x - <p, q> - 1 and ||e_x - q||^2 = 1 - 2 q_x + ||q||^2 (no one-hot needed).
    Expectations are ``weights``-weighted averages over the batch's loss positions. Computed in float64, no gradient.
    """
    with torch.no_grad():
        p = student_logits.double().softmax(dim=-1)
        q = teacher_logits.double().softmax(dim=-1)
        p_x = p.gather(-1, targets[:, None]).squeeze(-1)
        q_x = q.gather(-1, targets[:, None]).squeeze(-1)
        inner = p_x + q_x - (p * q).sum(-1) - 1
        norm = 1 - 2 * q_x + (q * q).sum(-1)
        w = torch.exp(log_tilt.double())
        weights = weights.double()
        return -(weights * w * inner).sum() / (weights * norm).sum().clamp_min(1e-30)


@dataclass
class ControlVariate:
    """The control variate c in use: a constant, or the EMA-smoothed variance-optimal c* (``adaptive=True``)."""

    value: float = 1.0
    adaptive: bool = False
    ema: float = 0.9

    def update(self, estimate: float) -> float:
        """Fold a batch estimate of c* into the EMA (adaptive mode only); return the c to use."""
        if self.adaptive and estimate == estimate:  # skip NaN estimates
            self.value = self.ema * self.value + (1 - self.ema) * estimate
        return self.value

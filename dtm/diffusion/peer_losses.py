"""Estimators of the likelihood-free peers DTM is compared with: DMPO and GDSD, which like DTM match a reward-tilted
target law with a loss on the unmasking posteriors (the "tilt family" of docs/methods.md).

Pure tensor code: no models, no I/O.

- DMPO (Zhu et al. 2025, "Enhancing reasoning for diffusion LLMs via distribution matching policy optimization",
  arXiv 2510.08233): a denoising cross-entropy weighted by self-normalised importance weights of the reward-tilted
  target p_ref exp(r / alpha), minus a weight baseline; the weighted loss is :func:`dtm.diffusion.rl_losses.wd1_loss`
  on ELBO estimates (:func:`dtm.diffusion.rl_losses.block_elbo`).
- GDSD (Tang et al. 2026, "GDSD: Reinforcement learning as guided denoiser self-distillation for diffusion language
  models", arXiv 2605.29398): a squared match of each masked token's log-ratio to the rollout policy with the scaled
  advantage, plus a k2 penalty towards the reference.

Layout as in :mod:`dtm.diffusion.rl_losses`: N = P x K rows, the K completions of a prompt adjacent.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from dtm.config.choices import WeightBaseline
from dtm.diffusion.rl_losses import group_advantages, masked_mean

# ---------------------------------------------------------------------------------------------- DMPO


def dmpo_weights(
    rewards: torch.Tensor,
    log_ratio: torch.Tensor,
    group_size: int,
    alpha: float,
    baseline: WeightBaseline = "negative",
    strength: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DMPO's sample weights, per group of the K completions of a prompt (DMPO):

        w+_i = softmax_{j in group}(l_j + r_j / alpha)_i,      l_j = log p_ref(o_j) - log q(o_j)
        b_i  = 0 (none),   1 / K (mean),   softmax_{j in group}(l_j - r_j / alpha)_i (negative)

    q is the law the group was drawn from (the rollout policy), p_ref the reference. w+ are the self-normalised
    importance weights of DMPO's target p*(o) ∝ p_ref(o) exp(r(o) / alpha) against q: sum_{i in group} w+_i f(o_i)
    tends to E_{p*}[f] as K grows. b is DMPO's weight baseline, subtracted with the factor lambda = ``strength``.
    Without it every group adds a total weight of 1 of plain likelihood training on its own samples: zero in
    expectation on-policy (E_q[grad log q] = 0), but not in a small batch. The mean baseline removes that term
    (lambda = 1: every group's weights sum to 0) and leaves the expected on-policy gradient unchanged. The negative
    baseline is the importance weight of the anti-target p_ref exp(-r / alpha): it also pushes the policy
    away from the low-reward completions. ``l = 0`` (no reference) targets the rollout policy itself tilted,
    q exp(r / alpha). Shifting every reward of a group by a constant changes nothing.

    Returns ``(w_plus, w_minus)`` with w_minus = lambda b, each ``[N]``: :func:`wd1_loss` with these weights and the
    ELBO estimate of log pi_theta(o_i) is DMPO's weighted denoising cross-entropy
    (:class:`dtm.training.baselines.DMPOTrainer`).
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    log_ratio, scaled = log_ratio.double().view(-1, group_size), rewards.double().view(-1, group_size) / alpha
    w_plus = (log_ratio + scaled).softmax(dim=1)
    if baseline == "none":
        base = torch.zeros_like(w_plus)
    elif baseline == "mean":
        base = torch.full_like(w_plus, 1 / group_size)
    else:
        base = (log_ratio - scaled).softmax(dim=1)
    return w_plus.flatten().float(), (strength * base).flatten().float()


def effective_sample_size(weights: torch.Tensor, group_size: int) -> float:
    """Mean over groups of (sum_i w_i)^2 / (K sum_i w_i^2): the fraction of a group's K completions that carry its
    weights (1 when uniform, 1/K when one completion takes all)."""
    groups = weights.double().view(-1, group_size)
    return (groups.sum(dim=1) ** 2 / (group_size * (groups**2).sum(dim=1))).mean().item()


# ---------------------------------------------------------------------------------------------- GDSD


def leave_one_out_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """GDSD's advantages, each completion against the mean of the other K - 1 of its group (GDSD):

    A_i = r_i - (1 / (K - 1)) sum_{j in group, j != i} r_j = K / (K - 1) (r_i - mean_group(r))
    """
    if group_size < 2:
        raise ValueError(f"a leave-one-out advantage needs groups of at least 2 completions, got {group_size}")
    return group_advantages(rewards, group_size, scale=False) * (group_size / (group_size - 1))


class DistillationLoss(NamedTuple):
    """GDSD's loss with its diagnostics: the mean log-ratio to the rollout policy and the mean k2 penalty to the
    reference over the loss positions (no gradient)."""

    loss: torch.Tensor
    log_ratio: torch.Tensor
    kl: torch.Tensor


def gdsd_loss(
    log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    loss_mask: torch.Tensor,
    advantages: torch.Tensor,
    psi: float,
    beta: float = 0.0,
    ref_log_probs: torch.Tensor | None = None,
) -> DistillationLoss:
    """GDSD's guided denoiser self-distillation on the log-probabilities ``[N, G]`` of the clean tokens at one masked
    state z_i per row, read on its loss positions M_i (``loss_mask``) only (GDSD):

        l_ik = log pi_theta(o_i^k | z_i) - log pi_old(o_i^k | z_i)
        k_ik = log pi_theta(o_i^k | z_i) - log pi_ref(o_i^k | z_i)
        L    = (1/N) sum_i (1/|M_i|) sum_{k in M_i} [(l_ik - psi A_i)^2 + (beta / 2) k_ik^2]

    pi_old is the policy that drew the rollouts (``old_log_probs`` are detached), pi_ref the reference; k^2 / 2 is the
    k2 estimator of KL(pi_theta || pi_ref) per token. The self-teacher is the closed-form optimum of reverse-KL
    regularised RL, pi* ∝ pi_old exp(psi A): its denoiser's log-ratio to pi_old at a completion's tokens is psi A, and
    GDSD regresses every masked token's log-ratio on it, so neither a sequence likelihood (ELBO) nor a normaliser is
    estimated. With free log-ratios per (state, position, token) the minimiser is l = psi E[A | z, o^k] for beta = 0
    and l = (2 psi E[A | z, o^k] - beta (log pi_old - log pi_ref)) / (2 + beta) otherwise. A normalised (softmax)
    denoiser cannot take every such value; to first order in psi it fits l = psi (E[r | z, o^k] - E[r | z]), which is
    also the log-ratio of the tilted posterior pi_{a + psi} to pi_a: the target of one DTM phase of step h = psi
    (both tested by enumeration). ``advantages``: ``[N]`` (e.g. :func:`leave_one_out_advantages`).
    """
    ratio = log_probs - old_log_probs.detach()
    per_position = (ratio - psi * advantages[:, None].to(ratio.dtype)) ** 2
    kl = torch.zeros_like(per_position)
    if beta != 0:
        if ref_log_probs is None:
            raise ValueError(f"ref_log_probs are required when beta != 0 (beta = {beta})")
        kl = (log_probs - ref_log_probs.detach()) ** 2 / 2
        per_position = per_position + beta * kl
    with torch.no_grad():
        diagnostics = masked_mean(ratio, loss_mask).mean(), masked_mean(kl, loss_mask).mean()
    return DistillationLoss(masked_mean(per_position, loss_mask).mean(), *diagnostics)

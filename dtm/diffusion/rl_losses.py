"""Estimators of the RL baselines DTM is compared with: diffu-GRPO (d1), wd1 and SPG, which maximise the expected
reward through a surrogate of log pi (the "ELBO family" of docs/methods.md; the likelihood-free peers DMPO and GDSD
are in :mod:`dtm.diffusion.peer_losses`).

Pure tensor code: no models, no I/O. The log-likelihood log pi(o | q) of a dLLM is intractable (it sums over all
unmasking orders), so each method optimises a surrogate built from the network's unmasking posteriors:

- diffu-GRPO (Zhao et al. 2025, "d1: Scaling reasoning in diffusion large language models via reinforcement
  learning"): a one-step mean-field estimate of every token's log-probability inside a PPO-style clipped objective.
- wd1 (Tang et al. 2025, "wd1: Weighted policy optimization for reasoning in diffusion language models"): a
  ratio-free weighted log-likelihood with softmax weights over each group.
- SPG (Wang et al. 2025, "SPG: Sandwiched policy gradient for masked diffusion language models"): an evidence lower
  bound (ELBO) for positive-advantage samples and an evidence upper bound (EUBO) for negative ones, estimated by
  Monte Carlo over SAR-aligned (block-wise) masked states.

Layout: a rollout batch holds N = P x K completions, rows ``j*K .. j*K + K - 1`` being the K completions (the group)
of prompt j, as in :class:`dtm.training.buffer.ReplayBuffer`. Response tensors are ``[N, G]`` (G = response length).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch


def group_advantages(rewards: torch.Tensor, group_size: int, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """Group-relative advantages over the K = ``group_size`` completions of each prompt (GRPO, as used by d1):

        A_i = (r_i - mean_group(r)) / (std_group(r) + eps)      (``scale=True``; std with Bessel's correction)
        A_i =  r_i - mean_group(r)                              (``scale=False``: wd1, SPG)

    A group whose completions all score the same gets A = 0: it carries no learning signal.
    """
    if group_size < 1 or rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    if scale and group_size < 2:
        raise ValueError("a normalised advantage needs groups of at least 2 completions")
    groups = rewards.double().view(-1, group_size)
    centred = groups - groups.mean(dim=1, keepdim=True)
    if scale:
        centred = centred / (groups.std(dim=1, keepdim=True) + eps)
    return centred.flatten().to(torch.float32)


def mean_field_input(
    prompt_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    gen_length: int,
    p_mask: float,
    mask_token_id: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """d1's one-step input ``[B, P + G]``: every response position masked, each real prompt token masked
    independently with probability ``p_mask`` (padding, ``attention_mask == 0``, is left alone).

    One forward pass on it gives, at every response position k, the mean-field estimate log pi(o^k | q~) of the
    token's log-probability (:func:`token_log_probs`). Re-drawing the prompt mask for each inner update is d1's
    regulariser against over-fitting the same rollouts.
    """
    draw = torch.rand(prompt_ids.shape, device=prompt_ids.device, generator=generator) < p_mask
    prompt = prompt_ids.masked_fill(draw & attention_mask.bool(), mask_token_id)
    response = prompt_ids.new_full((prompt_ids.shape[0], gen_length), mask_token_id)
    return torch.cat([prompt, response], dim=1)


def token_log_probs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[target] per position (``logits`` ``[..., V]``, ``targets`` ``[...]``), at least float32."""
    dtype = torch.promote_types(logits.dtype, torch.float32)
    flat = logits.reshape(-1, logits.shape[-1]).to(dtype)
    return -torch.nn.functional.cross_entropy(flat, targets.reshape(-1), reduction="none").view(targets.shape)


# ---------------------------------------------------------------------------------------------- diffu-GRPO (d1)


class PolicyLoss(NamedTuple):
    """A policy loss with its diagnostics: fraction of clipped tokens and mean KL estimate (no gradient)."""

    loss: torch.Tensor
    clip_fraction: torch.Tensor
    kl: torch.Tensor


def grpo_loss(
    log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    clip_eps: float,
    beta: float = 0.0,
    ref_log_probs: torch.Tensor | None = None,
) -> PolicyLoss:
    """diffu-GRPO's clipped objective on per-token log-probability estimates ``[N, G]`` (d1):

        rho_ik = exp(logp_ik - logp_old_ik)
        S_ik   = min(rho_ik A_i, clip(rho_ik, 1 - eps, 1 + eps) A_i)
        KL_ik  = exp(logp_ref_ik - logp_ik) - (logp_ref_ik - logp_ik) - 1
        L      = -(1/N) sum_i (1/G) sum_k (S_ik - beta KL_ik)

    ``old_log_probs`` come from the policy that generated the rollouts (detached); KL_ik is the k3 estimator of
    KL(pi_theta || pi_ref): non-negative, and 0 where the two policies agree. With ``beta = 0`` no reference is needed.
    ``clip_fraction`` counts tokens where the clipped term is the active one of the min.
    """
    ratio = torch.exp(log_probs - old_log_probs.detach())
    adv = advantages[:, None].to(log_probs.dtype)
    unclipped = ratio * adv
    clipped = ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv
    per_token = -torch.minimum(unclipped, clipped)
    kl = torch.zeros_like(per_token)
    if beta != 0:
        if ref_log_probs is None:
            raise ValueError(f"ref_log_probs are required when beta != 0 (beta = {beta})")
        delta = ref_log_probs.detach() - log_probs
        kl = torch.exp(delta) - delta - 1
        per_token = per_token + beta * kl
    with torch.no_grad():
        clip_fraction = (clipped < unclipped).float().mean()
    return PolicyLoss(per_token.mean(dim=1).mean(), clip_fraction, kl.detach().mean())


# ---------------------------------------------------------------------------------------------- wd1


def wd1_weights(advantages: torch.Tensor, group_size: int, psi: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """wd1's sample weights, a softmax over each group (wd1):

        w+_i = exp(psi A_i) / sum_{j in group} exp(psi A_j),     w-_i = exp(-psi A_i) / sum_{j in group} exp(-psi A_j)

    w+ favours the group's best completions, w- its worst. A softmax ignores a constant shift, so A = r - mean(r) and
    A = r give the same weights. Returns ``(w_plus, w_minus)``, each ``[N]`` with every group summing to 1.
    """
    groups = psi * advantages.double().view(-1, group_size)
    return groups.softmax(dim=1).flatten().float(), (-groups).softmax(dim=1).flatten().float()


def wd1_loss(seq_log_probs: torch.Tensor, w_plus: torch.Tensor, w_minus: torch.Tensor, group_size: int) -> torch.Tensor:
    """wd1's ratio-free weighted log-likelihood, averaged over prompts (wd1):

        L = (1/P) sum_j sum_{i in group j} (-w+_i log pi(o_i | q_j) + w-_i log pi(o_i | q_j))

    Raising the likelihood of the group's best completions and lowering that of its worst needs one likelihood
    estimate of the current policy only: no old or reference policy, no ratio. ``seq_log_probs`` ``[n]`` may be any
    subset of rows (a micro-batch): the mean over rows of K (w- - w+) log pi is the batch average above.
    """
    return (group_size * (w_minus - w_plus) * seq_log_probs).mean()


# ---------------------------------------------------------------------------------------------- SPG


def block_elbo(log_probs: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Per-token ELBO of the SAR (block-wise) model from S masked states per sequence (SPG, block-wise masking):

        ELBO_i = (1/S) sum_s (1/|M_s|) sum_{k in M_s} log pi(o_i^k | z_s)

    ``log_probs``, ``loss_mask``: ``[S, N, G]``; state s of sequence i (from
    :func:`dtm.diffusion.masking.sar_masked_states`) keeps earlier blocks clean, masks later blocks and masks a
    uniformly random subset M_s of size m ~ U{1..B} in a uniformly random active block; ``log_probs`` is read only on
    M_s. Why it is an ELBO: decoding block by block, each block in uniformly random order, gives
    log pi(o) >= sum_blocks E_order[sum_k log pi(o^k | earlier)] = G * E_s[(1/|M_s|) sum_{k in M_s} log pi(o^k | z_s)]
    (Jensen, then a uniform order unmasks position k with a uniform number m of block positions still masked), so
    ELBO_i * G is an unbiased estimate of a lower bound on log pi(o_i). With the states of
    :func:`dtm.diffusion.masking.uniform_masked_states` (m ~ U{1..G} positions masked anywhere, all of them loss
    positions) the same average is the masked-diffusion ELBO of the whole response, G * ELBO_i <= log pi(o_i) for the
    any-order model. Returns ``[N]``.
    """
    return masked_mean(log_probs, loss_mask).mean(dim=0)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the positions where ``mask`` holds, along the last dimension (0 where none does)."""
    weight = mask.to(values.dtype)
    return (values * weight).sum(dim=-1) / weight.sum(dim=-1).clamp_min(1)


def block_eubo(log_probs: torch.Tensor, loss_mask: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-token EUBO of the SAR (block-wise) model from S masked states per sequence (SPG, block-wise):

        EUBO_i = (1/|C_i|) sum_{k in C_i} (1/beta) log[(1/S) sum_s (G / |M_s|) 1{k in M_s} pi(o_i^k | z_s)^beta]

    where C_i are the positions masked in at least one state (the others have an empty average, whose log is -inf;
    they are left out). Same states and inputs as :func:`block_elbo`. The average inside the log is an unbiased
    estimate of E_order[pi(o^k | earlier)^beta]; with all states enumerated, G * EUBO_i is
    (1/beta) sum_k log E_order[pi^beta], which bounds log pi(o_i) from above for every model once beta >= B (Hölder's
    inequality over the B positions of a block; the bound grows with beta). SPG's runs use beta in [1, 2]: there the
    estimate need not bound every model, but its gradient still weights each state by pi^beta (a softmax over the
    states masking position k), which is what sets it apart from the ELBO's uniform average. Returns ``[N]``.
    """
    length = loss_mask.shape[-1]
    count = loss_mask.sum(dim=-1, keepdim=True).clamp_min(1).to(log_probs.dtype)
    log_terms = (beta * log_probs + torch.log(length / count)).masked_fill(~loss_mask, -math.inf)
    covered = loss_mask.any(dim=0)
    # Uncovered positions get finite dummies: a logsumexp over only -inf has a NaN gradient even where it is unused.
    log_terms = torch.where(covered[None], log_terms, torch.zeros_like(log_terms))
    per_position = (torch.logsumexp(log_terms, dim=0) - math.log(loss_mask.shape[0])) / beta
    per_position = torch.where(covered, per_position, torch.zeros_like(per_position))
    return per_position.sum(dim=-1) / covered.sum(dim=-1).clamp_min(1)


def spg_loss(
    advantages: torch.Tensor, elbo: torch.Tensor, eubo: torch.Tensor, eubo_weight: float = 1.0
) -> torch.Tensor:
    """SPG's sandwiched objective (SPG; ``eubo_weight`` < 1 is its mixture variant):

        L = -(1/N) sum_i A_i B_i,   B_i = ELBO_i                                          if A_i > 0
                                    B_i = w EUBO_i + (1 - w) ELBO_i                       otherwise

    Maximising a lower bound raises the likelihood of good samples; for bad samples (A < 0) the loss is minimised by
    lowering an upper bound, which pushes the true likelihood down, where lowering the ELBO could just loosen it.
    ``w = 1`` is SPG with the EUBO, ``w = 0`` an ELBO-only policy gradient. All inputs ``[n]`` (any subset of rows).
    """
    negative_bound = eubo_weight * eubo + (1 - eubo_weight) * elbo
    bound = torch.where(advantages > 0, elbo, negative_bound)
    return -(advantages.to(bound.dtype) * bound).mean()

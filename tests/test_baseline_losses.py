"""Tests for dtm.diffusion.rl_losses (d1, wd1, SPG) and dtm.diffusion.peer_losses (DMPO, GDSD) against closed forms,
per-sample loops and brute-force enumeration of unmasking orders and of the sequences of a tiny model."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from dtm.diffusion.masking import sar_masked_states
from dtm.diffusion.peer_losses import dmpo_weights, effective_sample_size, gdsd_loss, leave_one_out_advantages
from dtm.diffusion.rl_losses import (
    block_elbo,
    block_eubo,
    group_advantages,
    grpo_loss,
    mean_field_input,
    spg_loss,
    token_log_probs,
    wd1_loss,
    wd1_weights,
)

F64 = torch.float64
MASK = 1


# ----------------------------------------------------------------------------------------------------------
# Advantages, inputs, log-probabilities
# ----------------------------------------------------------------------------------------------------------


def test_group_advantages_closed_form():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0, 0.0, 0.3, 0.0, 0.0])
    std = math.sqrt(4 * 0.25 / 3)  # Bessel-corrected std of (1, 0, 0, 1)
    expected = [0.5 / (std + 1e-4), -0.5 / (std + 1e-4)] * 2
    mean = 0.075
    std3 = math.sqrt((3 * mean**2 + (0.3 - mean) ** 2) / 3)
    third = [(r - mean) / (std3 + 1e-4) for r in (0.0, 0.3, 0.0, 0.0)]
    got = group_advantages(rewards, 4)
    torch.testing.assert_close(got[:4], torch.tensor([expected[0], expected[1], expected[1], expected[0]]))
    assert torch.equal(got[4:8], torch.zeros(4))  # equal rewards: no signal
    torch.testing.assert_close(got[8:], torch.tensor(third))
    torch.testing.assert_close(group_advantages(rewards, 4, scale=False)[:4], torch.tensor([0.5, -0.5, -0.5, 0.5]))


@pytest.mark.parametrize(("n", "group", "scale"), [(6, 4, True), (4, 1, True), (4, 0, False)])
def test_group_advantages_rejects_bad_groups(n, group, scale):
    with pytest.raises(ValueError, match="group"):
        group_advantages(torch.zeros(n), group, scale=scale)


def test_mean_field_input_masks_response_and_prompt_tokens_at_rate_never_padding():
    prompt = torch.randint(4, 14, (400, 50), generator=torch.Generator().manual_seed(0))
    attention = torch.ones_like(prompt)
    attention[:, :10] = 0  # left padding
    x = mean_field_input(prompt, attention, 6, 0.3, MASK, torch.Generator().manual_seed(1))
    assert x.shape == (400, 56) and (x[:, 50:] == MASK).all()
    assert torch.equal(x[:, :10], prompt[:, :10])  # padding is left alone
    masked = x[:, 10:50] == MASK
    assert torch.equal(x[:, 10:50][~masked], prompt[:, 10:50][~masked])
    assert masked.float().mean().item() == pytest.approx(0.3, abs=0.01)
    again = mean_field_input(prompt, attention, 6, 0.3, MASK, torch.Generator().manual_seed(1))
    assert torch.equal(x, again)
    assert torch.equal(mean_field_input(prompt, attention, 6, 0.0, MASK)[:, :50], prompt)


def test_token_log_probs_matches_log_softmax_lookup():
    logits = torch.randn(3, 5, 7, dtype=torch.bfloat16)
    targets = torch.randint(7, (3, 5))
    got = token_log_probs(logits, targets)
    assert got.dtype == torch.float32 and got.shape == (3, 5)
    for i, k in itertools.product(range(3), range(5)):
        ref = logits[i, k].float().log_softmax(-1)[targets[i, k]]
        assert got[i, k].item() == pytest.approx(ref.item(), abs=1e-6)


# ----------------------------------------------------------------------------------------------------------
# diffu-GRPO
# ----------------------------------------------------------------------------------------------------------


def grpo_reference(logp, old, adv, eps, beta, ref) -> float:
    """The d1 objective, one sequence and one token at a time."""
    total = 0.0
    for i in range(len(logp)):
        row = 0.0
        for k in range(len(logp[i])):
            ratio = math.exp(logp[i][k] - old[i][k])
            surrogate = min(ratio * adv[i], min(max(ratio, 1 - eps), 1 + eps) * adv[i])
            delta = ref[i][k] - logp[i][k]
            row += -(surrogate - beta * (math.exp(delta) - delta - 1))
        total += row / len(logp[i])
    return total / len(logp)


def test_grpo_loss_matches_per_token_loop():
    g = torch.Generator().manual_seed(0)
    logp = -torch.rand(5, 7, generator=g, dtype=F64) * 3
    old = logp + 0.4 * torch.randn(5, 7, generator=g, dtype=F64)
    ref = logp + 0.4 * torch.randn(5, 7, generator=g, dtype=F64)
    adv = torch.randn(5, generator=g, dtype=F64)
    out = grpo_loss(logp, old, adv, 0.2, 0.04, ref)
    expected = grpo_reference(logp.tolist(), old.tolist(), adv.tolist(), 0.2, 0.04, ref.tolist())
    assert out.loss.item() == pytest.approx(expected, rel=1e-12)
    assert 0 < out.clip_fraction.item() < 1 and out.kl.item() > 0


def test_grpo_loss_on_policy_with_reference_equal_is_minus_mean_advantage_and_zero_kl():
    logp = -torch.rand(4, 6, dtype=F64)
    adv = torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=F64)
    out = grpo_loss(logp, logp.clone(), adv, 0.2, 0.5, logp.clone())
    assert out.loss.item() == pytest.approx(-adv.mean().item()) and out.kl.item() == 0
    assert out.clip_fraction.item() == 0


@pytest.mark.parametrize(
    ("ratio", "adv", "clipped"),
    [
        (1.2, 1.0, False),  # at the boundary: still the unclipped term
        (1.3, 1.0, True),  # above 1 + eps with A > 0: clipped, no gradient
        (1.3, -1.0, False),  # above 1 + eps with A < 0: min keeps the (worse) unclipped term
        (0.8, -1.0, False),
        (0.7, -1.0, True),  # below 1 - eps with A < 0: clipped
        (0.7, 1.0, False),
    ],
)
def test_grpo_clipping_at_the_boundaries(ratio, adv, clipped):
    logp = torch.tensor([[math.log(ratio)]], dtype=F64, requires_grad=True)
    out = grpo_loss(logp, torch.zeros(1, 1, dtype=F64), torch.tensor([adv], dtype=F64), 0.2)
    out.loss.backward()
    bound = min(max(ratio, 0.8), 1.2)
    assert out.loss.item() == pytest.approx(-min(ratio * adv, bound * adv))
    assert out.clip_fraction.item() == float(clipped)
    assert (logp.grad.item() == 0) == clipped


def test_grpo_requires_reference_when_beta_positive():
    with pytest.raises(ValueError, match="ref_log_probs"):
        grpo_loss(torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1), 0.2, beta=0.1)


# ----------------------------------------------------------------------------------------------------------
# wd1
# ----------------------------------------------------------------------------------------------------------


def test_wd1_weights_closed_form_and_shift_invariance():
    adv = torch.tensor([1.0, 0.0, -1.0, 0.5, 0.5, 0.5])
    w_plus, w_minus = wd1_weights(adv, 3, psi=2.0)
    e = [math.exp(2 * a) for a in (1.0, 0.0, -1.0)]
    torch.testing.assert_close(w_plus[:3], torch.tensor([v / sum(e) for v in e]))
    torch.testing.assert_close(w_minus[:3], torch.tensor([v / sum(e) for v in reversed(e)]))
    torch.testing.assert_close(w_plus[3:], torch.full((3,), 1 / 3))  # equal rewards: uniform, w+ = w-
    torch.testing.assert_close(wd1_weights(adv + 5.0, 3, psi=2.0)[0], w_plus)


def test_wd1_loss_matches_group_loop_and_equal_rewards_give_no_gradient():
    g = torch.Generator().manual_seed(0)
    seq = -torch.rand(6, generator=g, dtype=F64) * 10
    adv = torch.tensor([0.3, -0.2, -0.1, 0.0, 0.0, 0.0], dtype=F64)
    w_plus, w_minus = wd1_weights(adv, 3)
    expected = 0.0
    for j in range(2):
        for i in range(3 * j, 3 * j + 3):
            expected += -w_plus[i].item() * seq[i].item() + w_minus[i].item() * seq[i].item()
    seq.requires_grad_(True)
    loss = wd1_loss(seq, w_plus.double(), w_minus.double(), 3)
    assert loss.item() == pytest.approx(expected / 2, rel=1e-6)
    loss.backward()
    assert torch.equal(seq.grad[3:], torch.zeros(3, dtype=F64))
    assert seq.grad[0] < 0 and seq.grad[2] > 0  # gradient descent raises the best, lowers the worst


# ----------------------------------------------------------------------------------------------------------
# SPG: an enumerable toy masked diffusion model. p(i, R) is the model's probability of the sequence's token at
# position i when the positions in R are revealed (any function of R: the model need not be consistent).
# ----------------------------------------------------------------------------------------------------------


def toy_model(length: int, seed: int, factorised: bool = False) -> dict:
    g = torch.Generator().manual_seed(seed)
    table = {}
    for i in range(length):
        base = 0.05 + 0.9 * torch.rand((), generator=g, dtype=F64).item()
        others = [j for j in range(length) if j != i]
        for size in range(length):
            for revealed in itertools.combinations(others, size):
                value = base if factorised else 0.02 + 0.96 * torch.rand((), generator=g, dtype=F64).item()
                table[i, frozenset(revealed)] = value
    return table


def exact_bounds(table: dict, length: int, block: int, betas: list[float]) -> tuple[float, float, list[float]]:
    """(log p, ELBO, [EUBO(beta)]) of the SAR model by brute force over every unmasking order inside each block."""
    log_p = elbo = 0.0
    eubo = [0.0] * len(betas)
    for start in range(0, length, block):
        positions = list(range(start, start + block))
        orders = list(itertools.permutations(positions))
        per_order = []  # {position: pi_i(order)}
        for order in orders:
            probs = {}
            for k, i in enumerate(order):
                probs[i] = table[i, frozenset(range(start)) | frozenset(order[:k])]
            per_order.append(probs)
        log_p += math.log(sum(math.prod(p.values()) for p in per_order) / len(orders))
        elbo += sum(sum(math.log(v) for v in p.values()) for p in per_order) / len(orders)
        for b, beta in enumerate(betas):
            for i in positions:
                eubo[b] += math.log(sum(p[i] ** beta for p in per_order) / len(orders)) / beta
    return log_p, elbo, eubo


def enumerated_states(table: dict, length: int, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every SAR state (block, masked subset of it), repeated in proportion to its probability (uniform block,
    uniform size m, uniform subset of size m): log-probs and loss masks ``[S, 1, G]``."""
    lcm = math.lcm(*(math.comb(block, m) for m in range(1, block + 1)))
    log_probs, masks = [], []
    for start in range(0, length, block):
        for m in range(1, block + 1):
            for subset in itertools.combinations(range(start, start + block), m):
                revealed = frozenset(range(start)) | (frozenset(range(start, start + block)) - set(subset))
                row = torch.zeros(length, dtype=F64)
                mask = torch.zeros(length, dtype=torch.bool)
                for i in subset:
                    row[i] = math.log(table[i, revealed])
                    mask[i] = True
                for _ in range(lcm // math.comb(block, m)):
                    log_probs.append(row)
                    masks.append(mask)
    return torch.stack(log_probs)[:, None], torch.stack(masks)[:, None]


@pytest.mark.parametrize(("length", "block"), [(3, 3), (4, 2), (4, 4)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spg_bounds_sandwich_the_exact_log_likelihood(length, block, seed):
    table = toy_model(length, seed)
    betas = [1.0, float(block), 2.0 * block]
    log_p, elbo, eubo = exact_bounds(table, length, block, betas)
    log_probs, masks = enumerated_states(table, length, block)
    # With every state enumerated the estimators are the exact bounds (per token).
    assert length * block_elbo(log_probs, masks).item() == pytest.approx(elbo, rel=1e-10)
    for beta, exact in zip(betas, eubo, strict=True):
        assert length * block_eubo(log_probs, masks, beta).item() == pytest.approx(exact, rel=1e-10)
    # ELBO <= log p <= EUBO for beta >= block length, and the EUBO grows with beta.
    assert elbo < log_p < eubo[1] <= eubo[2]
    assert eubo[0] <= eubo[1]


def test_spg_bounds_are_tight_for_a_factorised_model():
    table = toy_model(4, seed=3, factorised=True)
    log_p, elbo, eubo = exact_bounds(table, 4, 2, [1.0, 2.0])
    assert elbo == pytest.approx(log_p) and eubo == pytest.approx([log_p, log_p])
    log_probs, masks = enumerated_states(table, 4, 2)
    assert 4 * block_eubo(log_probs, masks, 1.5).item() == pytest.approx(log_p)


def test_spg_elbo_from_sar_sampler_states_converges_to_the_exact_bound():
    length, block, draws = 4, 2, 6000
    table = toy_model(length, seed=4)
    _, elbo, eubo = exact_bounds(table, length, block, [1.0])
    state = sar_masked_states(
        torch.zeros(draws, length, dtype=torch.long), block, MASK, torch.Generator().manual_seed(0)
    )
    log_probs = torch.zeros(draws, length, dtype=F64)
    for s in range(draws):
        revealed = frozenset(torch.nonzero(~state.masked[s]).flatten().tolist())
        for i in torch.nonzero(state.loss_mask[s]).flatten().tolist():
            log_probs[s, i] = math.log(table[i, revealed])
    estimate = length * block_elbo(log_probs[:, None], state.loss_mask[:, None]).item()
    assert estimate == pytest.approx(elbo, abs=0.05)
    estimate = length * block_eubo(log_probs[:, None], state.loss_mask[:, None], 1.0).item()
    assert estimate == pytest.approx(eubo[0], abs=0.05)


def test_block_eubo_leaves_out_uncovered_positions_without_nan_gradients():
    log_probs = torch.log(torch.tensor([[[0.5, 0.25, 0.9, 0.9]], [[0.5, 0.125, 0.9, 0.9]]], dtype=F64))
    log_probs.requires_grad_(True)
    mask = torch.tensor([[[True, True, False, False]], [[False, True, False, False]]])
    out = block_eubo(log_probs, mask, 2.0)
    # Position 0: masked in state 0 only (m = 2); position 1: in both (m = 2, then m = 1).
    p0 = math.log((4 / 2 * 0.5**2 + 0) / 2) / 2
    p1 = math.log((4 / 2 * 0.25**2 + 4 / 1 * 0.125**2) / 2) / 2
    assert out.item() == pytest.approx((p0 + p1) / 2)
    out.backward()
    assert torch.isfinite(log_probs.grad).all() and (log_probs.grad[:, :, 2:] == 0).all()


def test_spg_loss_matches_per_sample_loop():
    adv = torch.tensor([0.5, -0.5, 0.0, -1.0], dtype=F64)
    elbo = torch.tensor([-1.0, -2.0, -3.0, -4.0], dtype=F64)
    eubo = torch.tensor([-0.5, -1.5, -2.5, -3.5], dtype=F64)
    for weight in (0.0, 0.5, 1.0):
        expected = 0.0
        for a, lo, hi in zip(adv.tolist(), elbo.tolist(), eubo.tolist(), strict=True):
            expected += -a * (lo if a > 0 else weight * hi + (1 - weight) * lo)
        assert spg_loss(adv, elbo, eubo, weight).item() == pytest.approx(expected / 4)


# ----------------------------------------------------------------------------------------------------------
# Gradient sign: one SGD step on each objective raises the likelihood of the good completion and lowers the bad one's
# (a context-free model: log pi(v | anything) = log_softmax(theta)[k, v], whose exact log-likelihood is known).
# ----------------------------------------------------------------------------------------------------------

GOOD = torch.tensor([0, 1, 2, 3])
BAD = torch.tensor([4, 5, 6, 7])


def exact_log_likelihood(theta: torch.Tensor, seq: torch.Tensor) -> float:
    return theta.log_softmax(-1).gather(-1, seq[:, None]).sum().item()


def objective(method: str, theta: torch.Tensor) -> torch.Tensor:
    responses = torch.stack([GOOD, BAD])
    per_token = theta.log_softmax(-1)[torch.arange(4), responses]  # [2, 4]: the same for every masked state
    rewards = torch.tensor([1.0, 0.0])
    if method == "diffu_grpo":
        adv = group_advantages(rewards, 2)
        return grpo_loss(per_token, per_token.detach(), adv, 0.2, 0.04, per_token.detach()).loss
    if method == "wd1":
        w_plus, w_minus = wd1_weights(group_advantages(rewards, 2, scale=False), 2)
        return wd1_loss(per_token.sum(1), w_plus, w_minus, 2)
    if method == "gdsd":
        adv = leave_one_out_advantages(rewards, 2)
        return gdsd_loss(per_token, per_token.detach(), torch.ones(2, 4, dtype=torch.bool), adv, 1.0).loss
    state = sar_masked_states(responses.repeat(3, 1), 2, MASK, torch.Generator().manual_seed(0))
    log_probs = per_token.repeat(3, 1).view(3, 2, 4)
    mask = state.loss_mask.view(3, 2, 4)
    if method == "dmpo":
        w_plus, w_minus = dmpo_weights(rewards, torch.zeros(2), 2, alpha=0.5)
        return wd1_loss(block_elbo(log_probs, mask), w_plus, w_minus, 2)
    adv = group_advantages(rewards, 2, scale=False)
    return spg_loss(adv, block_elbo(log_probs, mask), block_eubo(log_probs, mask, 1.5), 0.5)


@pytest.mark.parametrize("method", ["diffu_grpo", "wd1", "spg", "dmpo", "gdsd"])
def test_one_step_raises_the_good_completion_and_lowers_the_bad_one(method):
    theta = torch.randn(4, 10, generator=torch.Generator().manual_seed(0), requires_grad=True)
    before = exact_log_likelihood(theta.detach(), GOOD), exact_log_likelihood(theta.detach(), BAD)
    objective(method, theta).backward()
    with torch.no_grad():
        theta -= 0.1 * theta.grad
    after = exact_log_likelihood(theta.detach(), GOOD), exact_log_likelihood(theta.detach(), BAD)
    assert after[0] > before[0] and after[1] < before[1]


# ----------------------------------------------------------------------------------------------------------
# DMPO and GDSD on an enumerable model: responses of G = 2 tokens over V = 3 values, a tabular denoiser with free
# logits for each masked state and position, and the rollout law p given by integer counts. The "batch" holds every
# sequence count(x) times under every masked state of the uniform masking law ({0}: 1/4, {1}: 1/4, {0, 1}: 1/2, the
# last listed twice), so that a plain mean over its rows is the exact expectation over rollouts and states.
# ----------------------------------------------------------------------------------------------------------

V = 3
SEQUENCES = torch.tensor(list(itertools.product(range(V), repeat=2)))  # row x0 * V + x1
COUNTS = torch.tensor([3, 1, 2, 4, 1, 2, 3, 2, 2])  # rollout law p(x) = count / 20
STATES = [(True, False), (False, True), (True, True), (True, True)]  # masked positions
REWARDS = torch.tensor([0.0, 1.0, 0.3, 0.5, 0.0, 1.0, 0.2, 0.8, 0.1], dtype=F64)


def table_key(x: torch.Tensor, masked: tuple[bool, bool], position: int) -> int:
    """The denoiser's table row for ``position`` of a state: by the clean other token, or 6 / 7 when both are
    masked."""
    if all(masked):
        return 6 + position
    return 3 * position + int(x[1 - position])


def enumerated_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(sequence index [R], responses [R, 2], loss masks [R, 2], table keys [R, 2]) of every (state, sequence)
    pair, each sequence count(x) times."""
    index, masks, keys = [], [], []
    for masked in STATES:
        for x, count in enumerate(COUNTS.tolist()):
            for _ in range(count):
                index.append(x)
                masks.append(masked)
                keys.append([table_key(SEQUENCES[x], masked, k) for k in range(2)])
    index = torch.tensor(index)
    return index, SEQUENCES[index], torch.tensor(masks), torch.tensor(keys)


def conditionals(law: torch.Tensor) -> torch.Tensor:
    """The exact denoiser ``[8, V]`` of a law over the 9 sequences: p(x0 | x1), p(x1 | x0), then the marginals."""
    joint = (law / law.sum()).view(V, V)  # [x0, x1]
    rows = [joint[:, v] / joint[:, v].sum() for v in range(V)] + [joint[v] / joint[v].sum() for v in range(V)]
    return torch.stack([*rows, joint.sum(1), joint.sum(0)])


def table_log_probs(logits: torch.Tensor, responses: torch.Tensor, masks: torch.Tensor, keys: torch.Tensor):
    """log pi(x^k | z) of the tabular denoiser at the loss positions, 0 elsewhere (as the trainers give it)."""
    log_probs = logits.log_softmax(-1)[keys, responses]
    return torch.where(masks, log_probs, torch.zeros_like(log_probs))


ROLLOUT_LAW = COUNTS.double() / COUNTS.sum()
REFERENCE_LAW = torch.tensor([1.0, 2.0, 1.0, 3.0, 1.0, 1.0, 2.0, 1.0, 4.0], dtype=F64) / 16


def dmpo_objective(logits: torch.Tensor, baseline: str, alpha: float = 0.5, strength: float = 1.0) -> torch.Tensor:
    """DMPO's loss on the enumerated batch, drawn from the rollout law, with the exact log p_ref - log p."""
    index, responses, masks, keys = enumerated_batch()
    log_ratio = (REFERENCE_LAW.log() - ROLLOUT_LAW.log())[index]
    w_plus, w_minus = dmpo_weights(REWARDS[index], log_ratio, len(index), alpha, baseline, strength)
    elbo = block_elbo(table_log_probs(logits, responses, masks, keys)[None], masks[None])
    return wd1_loss(elbo, w_plus.double(), w_minus.double(), len(index))


def test_dmpo_minimiser_is_the_denoiser_of_the_reward_tilted_target():
    alpha = 0.5
    target = REFERENCE_LAW * torch.exp(REWARDS / alpha)  # p* ∝ p_ref exp(r / alpha)
    at_target = conditionals(target).log().requires_grad_(True)
    dmpo_objective(at_target, "none", alpha).backward()
    torch.testing.assert_close(at_target.grad, torch.zeros_like(at_target), atol=1e-7, rtol=0)  # float32 weights
    # The loss is convex in the logits, so a zero gradient is its minimum; elsewhere the gradient does not vanish.
    for law in (ROLLOUT_LAW, REFERENCE_LAW, ROLLOUT_LAW * torch.exp(REWARDS / alpha)):
        elsewhere = conditionals(law).log().requires_grad_(True)
        dmpo_objective(elsewhere, "none", alpha).backward()
        assert elsewhere.grad.abs().max() > 1e-3


def test_dmpo_mean_baseline_keeps_the_expected_gradient_and_the_negative_one_pushes_from_the_anti_target():
    alpha, strength = 0.5, 0.7
    grads = {}
    for baseline in ("none", "mean", "negative"):
        at_rollout_law = conditionals(ROLLOUT_LAW).log().requires_grad_(True)  # the policy that drew the batch
        dmpo_objective(at_rollout_law, baseline, alpha, strength).backward()
        grads[baseline] = at_rollout_law.grad
    assert grads["none"].abs().max() > 1e-3
    torch.testing.assert_close(grads["mean"], grads["none"], atol=1e-7, rtol=0)
    # Negative baseline: strength times the gradient of the ELBO averaged under p_ref exp(-r / alpha), added.
    index, responses, masks, keys = enumerated_batch()
    anti = REFERENCE_LAW * torch.exp(-REWARDS / alpha)
    per_row = (anti / anti.sum() / (len(STATES) * COUNTS))[index]
    logits = conditionals(ROLLOUT_LAW).log().requires_grad_(True)
    elbo = block_elbo(table_log_probs(logits, responses, masks, keys)[None], masks[None])
    (strength * (per_row * elbo).sum()).backward()
    torch.testing.assert_close(grads["negative"] - grads["none"], logits.grad, atol=1e-7, rtol=0)


def test_dmpo_weights_closed_form():
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.2, 0.2, 0.2])
    log_ratio = torch.tensor([0.3, -0.1, 0.0, 0.0, 0.5, -0.5])
    w_plus, w_minus = dmpo_weights(rewards, log_ratio, 3, alpha=0.25, baseline="negative", strength=0.5)
    plus = [math.exp(v + r / 0.25) for v, r in zip(log_ratio.tolist(), rewards.tolist(), strict=True)]
    minus = [math.exp(v - r / 0.25) for v, r in zip(log_ratio.tolist(), rewards.tolist(), strict=True)]
    for group in (slice(0, 3), slice(3, 6)):
        torch.testing.assert_close(w_plus[group], torch.tensor(plus[group]) / sum(plus[group]))
        torch.testing.assert_close(w_minus[group], 0.5 * torch.tensor(minus[group]) / sum(minus[group]))
    assert torch.equal(dmpo_weights(rewards, log_ratio, 3, 0.25, "none")[1], torch.zeros(6))
    torch.testing.assert_close(dmpo_weights(rewards, log_ratio, 3, 0.25, "mean")[1], torch.full((6,), 1 / 3))
    torch.testing.assert_close(dmpo_weights(rewards + 2.0, log_ratio, 3, 0.25)[0], w_plus)  # a reward shift: nothing
    with pytest.raises(ValueError, match="alpha"):
        dmpo_weights(rewards, log_ratio, 3, alpha=0.0)


def test_effective_sample_size_of_uniform_and_one_hot_groups():
    weights = torch.tensor([0.25, 0.25, 0.25, 0.25, 1.0, 0.0, 0.0, 0.0])
    assert effective_sample_size(weights, 4) == pytest.approx((1 + 0.25) / 2)


def test_leave_one_out_advantages_closed_form():
    rewards = torch.tensor([1.0, 0.0, 0.5, 2.0, 2.0, 2.0])
    expected = [1.0 - 0.25, 0.0 - 0.75, 0.5 - 0.5, 0.0, 0.0, 0.0]
    torch.testing.assert_close(leave_one_out_advantages(rewards, 3), torch.tensor(expected))
    with pytest.raises(ValueError, match="at least 2"):
        leave_one_out_advantages(rewards, 1)


def exact_advantages() -> torch.Tensor:
    """A(x) = r(x) - E_p[r]: the leave-one-out advantage of an infinite group."""
    return REWARDS - (ROLLOUT_LAW * REWARDS).sum()


def conditional_advantage(law_weights: torch.Tensor) -> torch.Tensor:
    """E_p[f | state, token] ``[8, V]`` of f = ``law_weights`` / p over the sequences (a conditional mean under p)."""
    joint = (ROLLOUT_LAW * law_weights).view(V, V)
    mass = ROLLOUT_LAW.view(V, V)
    rows = [joint[:, v] / mass[:, v] for v in range(V)] + [joint[v] / mass[v] for v in range(V)]
    return torch.stack([*rows, joint.sum(1) / mass.sum(1), joint.sum(0) / mass.sum(0)])


def gdsd_objective(offsets: torch.Tensor, psi: float, beta: float, reference: torch.Tensor) -> torch.Tensor:
    """GDSD's loss on the enumerated batch with free log-ratios ``offsets[key, token]`` to the rollout policy."""
    index, responses, masks, keys = enumerated_batch()
    old = table_log_probs(conditionals(ROLLOUT_LAW).log(), responses, masks, keys)
    ref = table_log_probs(reference, responses, masks, keys)
    log_probs = old + torch.where(masks, offsets[keys, responses], torch.zeros_like(old))
    return gdsd_loss(log_probs, old, masks, exact_advantages()[index], psi, beta, ref).loss


@pytest.mark.parametrize(("psi", "beta"), [(1.0, 0.0), (0.3, 0.0), (2.0, 0.5)])
def test_gdsd_per_token_log_ratio_fit_is_the_scaled_advantage(psi, beta):
    reference = torch.randn(8, V, generator=torch.Generator().manual_seed(0), dtype=F64)
    mean_advantage = conditional_advantage(exact_advantages())  # E[A | state, token]
    pull = conditionals(ROLLOUT_LAW).log() - reference.log_softmax(-1)  # log pi_old - log pi_ref, per entry
    fit = (2 * psi * mean_advantage - beta * pull) / (2 + beta)
    offsets = fit.clone().requires_grad_(True)
    gdsd_objective(offsets, psi, beta, reference).backward()
    torch.testing.assert_close(offsets.grad, torch.zeros_like(offsets), atol=1e-12, rtol=0)
    moved = (fit + 0.1).requires_grad_(True)  # the objective is a convex quadratic: elsewhere, no zero gradient
    gdsd_objective(moved, psi, beta, reference).backward()
    assert moved.grad.abs().min() > 1e-3


def test_gdsd_softmax_denoiser_fits_the_tilted_posterior_to_first_order():
    """With a normalised denoiser the fit is psi (E[r | z, v] - E[r | z]) + O(psi^2): the log-ratio of the tilted
    posterior pi_{a + psi} to pi_a, computed here from the law p exp(psi r) by enumeration."""
    index, responses, masks, keys = enumerated_batch()
    old_logits = conditionals(ROLLOUT_LAW).log()
    old = table_log_probs(old_logits, responses, masks, keys)
    advantages = exact_advantages()[index]
    errors = {}
    for psi in (0.02, 0.01):
        step = torch.zeros(8, V, dtype=F64, requires_grad=True)  # logits = old + psi * step

        def closure(step=step, psi=psi):
            step.grad = None
            log_probs = table_log_probs(old_logits + psi * step, responses, masks, keys)
            loss = gdsd_loss(log_probs, old, masks, advantages, psi).loss / psi**2
            loss.backward()
            return loss

        optimizer = torch.optim.LBFGS([step], max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-15)
        optimizer.step(closure)
        fit = (old_logits + psi * step.detach()).log_softmax(-1) - old_logits
        tilt = conditionals(ROLLOUT_LAW * torch.exp(psi * REWARDS)).log() - old_logits
        errors[psi] = (fit - tilt).abs().max().item()
        assert (fit - tilt).abs().max() < 0.05 * tilt.abs().max()
    assert errors[0.01] < 0.3 * errors[0.02]  # the gap shrinks like psi^2, not psi


def test_gdsd_loss_matches_per_token_loop_and_needs_the_reference_for_beta():
    g = torch.Generator().manual_seed(0)
    logp = -torch.rand(3, 4, generator=g, dtype=F64)
    old = logp + 0.2 * torch.randn(3, 4, generator=g, dtype=F64)
    ref = logp + 0.2 * torch.randn(3, 4, generator=g, dtype=F64)
    mask = torch.tensor([[True, False, True, True], [False, False, True, False], [True, True, True, True]])
    adv = torch.tensor([0.5, -1.0, 0.2], dtype=F64)
    expected = 0.0
    for i in range(3):
        terms = [
            (logp[i, k] - old[i, k] - 1.5 * adv[i]) ** 2 + 0.1 / 2 * (logp[i, k] - ref[i, k]) ** 2
            for k in range(4)
            if mask[i, k]
        ]
        expected += sum(terms).item() / len(terms) / 3
    out = gdsd_loss(logp, old, mask, adv, 1.5, 0.1, ref)
    assert out.loss.item() == pytest.approx(expected, rel=1e-12)
    on_policy = gdsd_loss(logp, logp, mask, adv, 1.5)
    assert on_policy.log_ratio.item() == 0 and on_policy.kl.item() == 0
    with pytest.raises(ValueError, match="ref_log_probs"):
        gdsd_loss(logp, old, mask, adv, 1.0, beta=0.1)

"""Tests for dtm.diffusion.losses against independent references: enumeration, dense targets, brute force."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from dtm.diffusion.losses import (
    ControlVariate,
    cdtm_loss,
    leave_one_out_log_mean_exp,
    masked_diffusion_loss,
    optimal_control_variate,
    position_weights,
    tilt_shift,
)

F64 = torch.float64


# ----------------------------------------------------------------------------------------------------------
# Enumerable toy: V = 3, L = 3, a random joint p over V^L and a reward r(x) in [0, 1].
# ----------------------------------------------------------------------------------------------------------

V, L = 3, 3
H = 0.7
MASKED = (0, 2)  # loss positions; position 1 is clean in x_t


def _toy(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All sequences [V^L, L], a base joint p [V^L] and a reward r [V^L], float64."""
    gen = torch.Generator().manual_seed(seed)
    seqs = torch.tensor(list(itertools.product(range(V), repeat=L)), dtype=torch.long)
    p = torch.rand(len(seqs), generator=gen, dtype=F64) + 0.05
    p = p / p.sum()
    r = torch.rand(len(seqs), generator=gen, dtype=F64)
    return seqs, p, r


def _consistent(seqs: torch.Tensor, clean_value: int) -> torch.Tensor:
    """Boolean [V^L]: sequences consistent with x_t = (M, clean_value, M)."""
    return seqs[:, 1] == clean_value


def _posterior(seqs: torch.Tensor, weight: torch.Tensor, clean_value: int) -> torch.Tensor:
    """pi(v | x_t, i) ∝ sum_{x ~ x_t, x^i = v} weight(x) for i in MASKED, by plain loops: [len(MASKED), V]."""
    out = torch.zeros(len(MASKED), V, dtype=F64)
    for k, i in enumerate(MASKED):
        for v in range(V):
            total = 0.0
            for x, wx in zip(seqs.tolist(), weight.tolist(), strict=True):
                if x[1] == clean_value and x[i] == v:
                    total += wx
            out[k, v] = total
    return out / out.sum(dim=1, keepdim=True)


def _enumerate_rollouts(
    seqs: torch.Tensor, p: torch.Tensor, r: torch.Tensor, clean_value: int, h: float
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(targets, log_tilt, weights) for each clean X_1 consistent with x_t; weights = p(X_1 | x_t)."""
    keep = _consistent(seqs, clean_value)
    cond = p[keep] / p[keep].sum()
    n = len(MASKED)
    return [
        (x1[list(MASKED)], torch.full((n,), h * float(rx), dtype=F64), torch.full((n,), float(px), dtype=F64))
        for x1, px, rx in zip(seqs[keep], cond, r[keep], strict=True)
    ]


def _expected_cdtm(student_logits, teacher_logits, rollouts, c: float) -> torch.Tensor:
    """E_{X_1 ~ p(. | x_t)}[c-DTM loss]: one cdtm_loss call per enumerated X_1, p(X_1 | x_t) in weights."""
    total = student_logits.new_zeros(())
    for targets, log_tilt, weights in rollouts:
        total = total + cdtm_loss(student_logits, teacher_logits, targets, log_tilt, weights, c)
    return total


@pytest.mark.parametrize("c", [0.0, 1.0, 0.5])
@pytest.mark.parametrize("clean_value", [0, 2])
def test_cdtm_minimiser_is_exact_tilted_posterior(c: float, clean_value: int) -> None:
    seqs, p, r = _toy(seed=1)
    base = _posterior(seqs, p, clean_value)
    tilted = _posterior(seqs, p * torch.exp(H * r), clean_value)
    assert (tilted - base).abs().max() > 1e-2  # the tilt must actually move the posterior

    teacher_logits = base.log()
    rollouts = _enumerate_rollouts(seqs, p, r, clean_value, H)
    assert len(rollouts) == V ** len(MASKED)
    student = torch.zeros(len(MASKED), V, dtype=F64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [student],
        lr=1.0,
        max_iter=200,
        tolerance_grad=1e-12,
        tolerance_change=1e-15,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = _expected_cdtm(student, teacher_logits, rollouts, c)
        loss.backward()
        return loss

    opt.step(closure)
    learned = student.detach().softmax(dim=-1)
    assert (learned - tilted).abs().max().item() < 1e-5
    # the student did not just stay at the teacher
    assert (learned - base).abs().max().item() > 1e-2


# ----------------------------------------------------------------------------------------------------------
# Dense reference.
# ----------------------------------------------------------------------------------------------------------


def _dense_cdtm(student, teacher, targets, log_tilt, weights, c):
    """Naive dense c-DTM: builds the [N, V] target with an explicit one-hot."""
    onehot = torch.nn.functional.one_hot(targets, student.shape[-1]).to(student.dtype)
    target = c * teacher.softmax(-1) + onehot * (torch.exp(log_tilt) - c)[:, None]
    return -(weights * (target * student.log_softmax(-1)).sum(-1)).sum()


def _random_inputs(seed: int, n: int = 7, vocab: int = 11, dtype=F64, tilt_scale: float = 2.0):
    gen = torch.Generator().manual_seed(seed)
    student = (3 * torch.randn(n, vocab, generator=gen, dtype=F64)).to(dtype)
    teacher = (3 * torch.randn(n, vocab, generator=gen, dtype=F64)).to(dtype)
    targets = torch.randint(0, vocab, (n,), generator=gen)
    log_tilt = (tilt_scale * torch.rand(n, generator=gen, dtype=F64)).to(dtype)
    weights = (torch.rand(n, generator=gen, dtype=F64) + 0.1).to(dtype)
    return student, teacher, targets, log_tilt, weights


@pytest.mark.parametrize("c", [0.0, 1.0, 0.3, -0.5])
@pytest.mark.parametrize("seed", [0, 1])
def test_cdtm_matches_dense_reference(c: float, seed: int) -> None:
    student, teacher, targets, log_tilt, weights = _random_inputs(seed)
    s1 = student.clone().requires_grad_(True)
    s2 = student.clone().requires_grad_(True)
    loss = cdtm_loss(s1, teacher, targets, log_tilt, weights, c)
    ref = _dense_cdtm(s2, teacher, targets, log_tilt, weights, c)
    (g1,) = torch.autograd.grad(loss, s1)
    (g2,) = torch.autograd.grad(ref, s2)
    assert torch.allclose(loss.double(), ref, rtol=1e-5, atol=1e-6)
    assert torch.allclose(g1.double(), g2, rtol=1e-5, atol=1e-6)

    # shift = max(log_tilt): the loss and its gradient are the dense ones times exp(-shift)
    shift = float(log_tilt.max())
    s3 = student.clone().requires_grad_(True)
    shifted = cdtm_loss(s3, teacher, targets, log_tilt, weights, c, shift=shift)
    (g3,) = torch.autograd.grad(shifted, s3)
    assert torch.allclose(shifted.double(), ref * math.exp(-shift), rtol=1e-5, atol=1e-6)
    assert torch.allclose(g3.double(), g2 * math.exp(-shift), rtol=1e-5, atol=1e-6)


def test_cdtm_gradient_has_closed_form() -> None:
    """Per position: d loss / d logits = weight * (e^{hr} (p - e_x) + c (e_x - q))."""
    student, teacher, targets, log_tilt, weights = _random_inputs(5)
    c = 0.7
    s = student.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(cdtm_loss(s, teacher, targets, log_tilt, weights, c), s)
    onehot = torch.nn.functional.one_hot(targets, student.shape[-1]).double()
    w = torch.exp(log_tilt)[:, None]
    expected = weights[:, None] * (w * (student.softmax(-1) - onehot) + c * (onehot - teacher.softmax(-1)))
    assert torch.allclose(grad.double(), expected, rtol=1e-5, atol=1e-7)


def test_cdtm_float32_inputs_match_float64_reference() -> None:
    student, teacher, targets, log_tilt, weights = _random_inputs(3)
    loss = cdtm_loss(student.float(), teacher.float(), targets, log_tilt.float(), weights.float(), 1.0)
    ref = _dense_cdtm(student, teacher, targets, log_tilt, weights, 1.0)
    assert torch.isfinite(loss)
    assert torch.allclose(loss.double(), ref, rtol=1e-5, atol=1e-5)


def test_cdtm_large_tilt_with_shift_is_finite_and_aligned() -> None:
    student, teacher, targets, log_tilt, weights = _random_inputs(2, tilt_scale=10.0)
    log_tilt = log_tilt + 195.0  # exp(~200) overflows float32
    c = 1.0

    # float32 without a shift overflows: this is what the shift is for
    s0 = student.float().requires_grad_(True)
    unshifted = cdtm_loss(s0, teacher.float(), targets, log_tilt.float(), weights.float(), c)
    assert not torch.isfinite(unshifted)

    shift = tilt_shift(log_tilt.float())
    assert shift == pytest.approx(float(log_tilt.float().max()))
    s1 = student.float().requires_grad_(True)
    loss = cdtm_loss(s1, teacher.float(), targets, log_tilt.float(), weights.float(), c, shift=shift)
    (g1,) = torch.autograd.grad(loss, s1)
    assert torch.isfinite(loss)
    assert torch.isfinite(g1).all()

    # float64 dense reference without any shift
    s2 = student.clone().requires_grad_(True)
    ref = _dense_cdtm(s2, teacher, targets, log_tilt, weights, c)
    (g2,) = torch.autograd.grad(ref, s2)
    assert torch.isfinite(ref) and torch.isfinite(g2).all()
    cos = torch.nn.functional.cosine_similarity(g1.double().flatten(), g2.flatten(), dim=0)
    assert cos.item() > 1 - 1e-6
    # and the scale is exactly exp(-shift)
    assert torch.allclose(g1.double() * math.exp(shift), g2, rtol=1e-4, atol=0.0)
    assert loss.double().item() * math.exp(shift) == pytest.approx(ref.item(), rel=1e-4)


def test_tilt_shift_threshold() -> None:
    assert tilt_shift(torch.tensor([1.0, 59.0])) == 0.0
    assert tilt_shift(torch.tensor([1.0, 61.5, 3.0])) == pytest.approx(61.5)
    assert tilt_shift(torch.tensor([1.0, 10.0]), threshold=5.0) == pytest.approx(10.0)
    assert tilt_shift(torch.empty(0)) == 0.0


# ----------------------------------------------------------------------------------------------------------
# Control variate: variance reduction on the toy.
# ----------------------------------------------------------------------------------------------------------


def _per_sample_grads(
    x1: torch.Tensor, base_logits_by_value: torch.Tensor, r_of: torch.Tensor, h: float, c: float
) -> torch.Tensor:
    """Per-sample gradient of the c-DTM loss w.r.t. the student logits (student = teacher): [S, |MASKED| * V].

    ``x1``: clean sequences [S, L]; ``base_logits_by_value``: [V, |MASKED|, V] teacher logits per value of
    the clean position 1; ``r_of``: reward per sample [S]. One batched call; rows are independent.
    """
    n_samples = x1.shape[0]
    teacher = base_logits_by_value[x1[:, 1]].reshape(-1, V)  # [S * |MASKED|, V]
    student = teacher.clone().requires_grad_(True)
    targets = x1[:, list(MASKED)].reshape(-1)
    log_tilt = (h * r_of).repeat_interleave(len(MASKED))
    weights = torch.ones_like(log_tilt)
    loss = cdtm_loss(student, teacher, targets, log_tilt, weights, c)
    (grad,) = torch.autograd.grad(loss, student)
    return grad.reshape(n_samples, -1).double()


def test_control_variate_reduces_variance_and_keeps_the_mean() -> None:
    seqs, p, r = _toy(seed=2)
    h = 0.05
    base_by_value = torch.stack([_posterior(seqs, p, v).log() for v in range(V)])  # [V, |MASKED|, V]

    # exact expected gradient by enumeration: identical for c = 0 and c = 1 because q is the exact posterior
    exact = {c: (p[:, None] * _per_sample_grads(seqs, base_by_value, r, h, c)).sum(0) for c in (0.0, 1.0)}
    assert exact[0.0].abs().max() > 1e-4  # the tilt produces a non-trivial expected gradient
    assert torch.allclose(exact[0.0], exact[1.0], rtol=0.0, atol=1e-7)

    # Monte Carlo
    gen = torch.Generator().manual_seed(0)
    idx = torch.multinomial(p, 20000, replacement=True, generator=gen)
    grads = {c: _per_sample_grads(seqs[idx], base_by_value, r[idx], h, c) for c in (0.0, 1.0)}
    var = {c: g.var(dim=0).sum().item() for c, g in grads.items()}
    assert var[1.0] < 0.1 * var[0.0]

    # both Monte Carlo means estimate the same expected gradient (4 standard errors)
    for c, g in grads.items():
        se = g.std(dim=0) / math.sqrt(g.shape[0])
        assert ((g.mean(0) - exact[c]).abs() <= 4 * se + 1e-9).all(), c


# ----------------------------------------------------------------------------------------------------------
# optimal_control_variate and ControlVariate.
# ----------------------------------------------------------------------------------------------------------


def _dense_objective(c: float, student, teacher, targets, log_tilt, weights) -> float:
    """sum_i weights_i ||w_i (p_i - e_xi) + c (e_xi - q_i)||^2, dense, float64."""
    onehot = torch.nn.functional.one_hot(targets, student.shape[-1]).double()
    p = student.double().softmax(-1)
    q = teacher.double().softmax(-1)
    w = torch.exp(log_tilt.double())[:, None]
    g = w * (p - onehot) + c * (onehot - q)
    return float((weights.double() * (g * g).sum(-1)).sum())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_optimal_control_variate_minimises_gradient_energy(seed: int) -> None:
    student, teacher, targets, log_tilt, weights = _random_inputs(seed, n=13, vocab=6, tilt_scale=0.5)
    c_star = float(optimal_control_variate(student, teacher, targets, log_tilt, weights))

    # f(c) is an exact quadratic: fit it from three dense evaluations and take its vertex
    f = [_dense_objective(c, student, teacher, targets, log_tilt, weights) for c in (-1.0, 0.0, 1.0)]
    a = (f[2] + f[0] - 2 * f[1]) / 2
    b = (f[2] - f[0]) / 2
    vertex = -b / (2 * a)
    assert a > 0
    assert c_star == pytest.approx(vertex, rel=1e-8)

    # and it is a minimum of the dense objective
    f_star = _dense_objective(c_star, student, teacher, targets, log_tilt, weights)
    for delta in (1e-3, -1e-3, 0.1, -0.1):
        assert f_star <= _dense_objective(c_star + delta, student, teacher, targets, log_tilt, weights)


def test_optimal_control_variate_is_one_near_zero_tilt_at_teacher() -> None:
    """With student = teacher and h = 0: g(c) = (1 - c)(p - e_x), minimised at c = 1."""
    student, _, targets, _, weights = _random_inputs(4)
    c_star = float(optimal_control_variate(student, student, targets, torch.zeros(len(targets)), weights))
    assert c_star == pytest.approx(1.0, rel=1e-10)


def test_control_variate_constant_ignores_updates() -> None:
    cv = ControlVariate(value=0.4, adaptive=False)
    for est in (3.0, -2.0, float("nan")):
        assert cv.update(est) == 0.4
    assert cv.value == 0.4


def test_control_variate_adaptive_is_ema_and_skips_nan() -> None:
    cv = ControlVariate(value=1.0, adaptive=True, ema=0.8)
    expected = 1.0
    for est in (2.0, float("nan"), -0.5, 3.0, float("nan"), 0.25):
        out = cv.update(est)
        if not math.isnan(est):
            expected = 0.8 * expected + 0.2 * est
        assert out == pytest.approx(expected, rel=1e-12)
        assert cv.value == pytest.approx(expected, rel=1e-12)
    assert not math.isnan(cv.value)


# ----------------------------------------------------------------------------------------------------------
# position_weights.
# ----------------------------------------------------------------------------------------------------------


def test_position_weights_active_block_normalisation() -> None:
    loss_mask = torch.tensor(
        [
            [1, 0, 0, 0, 0, 0],
            [1, 1, 1, 0, 0, 0],
            [0, 1, 1, 1, 1, 1],
            [0, 0, 1, 0, 1, 0],
        ],
        dtype=torch.bool,
    )
    weights = position_weights(loss_mask)
    batch = loss_mask.shape[0]
    assert weights.shape == (int(loss_mask.sum()),)
    assert weights.sum().item() == pytest.approx(1.0, rel=1e-6)
    row_of = torch.arange(batch)[:, None].expand_as(loss_mask)[loss_mask]
    for b in range(batch):
        row = weights[row_of == b]
        assert row.sum().item() == pytest.approx(1.0 / batch, rel=1e-6)
        assert torch.allclose(row, torch.full_like(row, 1.0 / (batch * int(loss_mask[b].sum()))))


def test_position_weights_match_loop_on_random_mask() -> None:
    gen = torch.Generator().manual_seed(0)
    loss_mask = torch.rand(5, 9, generator=gen) < 0.5
    loss_mask[:, 0] = True  # no empty rows
    weights = position_weights(loss_mask)
    expected = []
    for b in range(loss_mask.shape[0]):
        n_b = int(loss_mask[b].sum())
        expected += [1.0 / (loss_mask.shape[0] * n_b)] * n_b
    assert torch.allclose(weights.double(), torch.tensor(expected, dtype=F64), rtol=1e-6)


# ----------------------------------------------------------------------------------------------------------
# masked_diffusion_loss.
# ----------------------------------------------------------------------------------------------------------


def test_masked_diffusion_loss_matches_loop_reference() -> None:
    gen = torch.Generator().manual_seed(0)
    batch, length, vocab = 4, 6, 9
    masked = torch.rand(batch, length, generator=gen) < 0.5
    masked[:, 2] = True
    full_logits = torch.randn(batch, length, vocab, generator=gen, dtype=F64)
    full_targets = torch.randint(0, vocab, (batch, length), generator=gen)
    mask_prob = torch.rand(batch, generator=gen, dtype=F64) * 0.9 + 0.1
    loss = masked_diffusion_loss(full_logits[masked], full_targets[masked], masked, mask_prob)

    total = 0.0
    for b in range(batch):
        row = 0.0
        for i in range(length):
            if masked[b, i]:
                log_probs = full_logits[b, i].log_softmax(-1)
                row += -float(log_probs[full_targets[b, i]])
        total += row / (float(mask_prob[b]) * length)
    assert loss.item() == pytest.approx(total / batch, rel=1e-6)


def test_masked_diffusion_loss_all_masked_t1_is_mean_cross_entropy() -> None:
    gen = torch.Generator().manual_seed(1)
    batch, length, vocab = 3, 5, 7
    masked = torch.ones(batch, length, dtype=torch.bool)
    logits = torch.randn(batch * length, vocab, generator=gen)
    targets = torch.randint(0, vocab, (batch * length,), generator=gen)
    loss = masked_diffusion_loss(logits, targets, masked, torch.ones(batch))
    ref = torch.nn.functional.cross_entropy(logits, targets)
    assert torch.allclose(loss, ref, rtol=1e-6, atol=1e-7)


def test_cdtm_without_teacher_when_c_is_zero():
    g = torch.Generator().manual_seed(5)
    student, teacher = torch.randn(6, 7, generator=g), torch.randn(6, 7, generator=g)
    targets = torch.randint(7, (6,), generator=g)
    log_tilt, weights = torch.rand(6, generator=g), torch.rand(6, generator=g)
    with_teacher = cdtm_loss(student, teacher, targets, log_tilt, weights, c=0.0)
    torch.testing.assert_close(cdtm_loss(student, None, targets, log_tilt, weights, c=0.0), with_teacher)
    with pytest.raises(ValueError, match="teacher_logits"):
        cdtm_loss(student, None, targets, log_tilt, weights, c=1.0)


# ----------------------------------------------------------------------------------------------------------
# Per-prompt (leave-one-out) baselines and normalisation.
# ----------------------------------------------------------------------------------------------------------


def test_leave_one_out_log_mean_exp_matches_a_loop() -> None:
    gen = torch.Generator().manual_seed(0)
    values = 3 * torch.randn(5, 4, generator=gen, dtype=F64)
    out = leave_one_out_log_mean_exp(values)
    for p in range(5):
        for j in range(4):
            others = [math.exp(float(values[p, k])) for k in range(4) if k != j]
            assert float(out[p, j]) == pytest.approx(math.log(sum(others) / 3), rel=1e-12)
    big = leave_one_out_log_mean_exp(torch.tensor([[500.0, 501.0, 502.0]], dtype=F64))
    assert torch.isfinite(big).all()
    with pytest.raises(ValueError, match="at least 2"):
        leave_one_out_log_mean_exp(torch.zeros(3, 1))


@pytest.mark.parametrize(("baseline", "normalise"), [(True, False), (False, True), (True, True)])
def test_per_prompt_control_keeps_the_tilted_minimiser(baseline: bool, normalise: bool) -> None:
    """Two completions per prompt: completion 1's c (and divisor) come from completion 2, drawn independently from
    the same prompt's law; the expected loss over both is still minimised by the tilted posterior."""
    seqs, p, r = _toy(seed=2)
    clean_value = 1
    base = _posterior(seqs, p, clean_value)
    tilted = _posterior(seqs, p * torch.exp(H * r), clean_value)
    teacher_logits = base.log()
    keep = _consistent(seqs, clean_value)
    cond = p[keep] / p[keep].sum()
    n = len(MASKED)
    terms = []
    for x1, p1, r1 in zip(seqs[keep], cond, r[keep], strict=True):
        for p2, r2 in zip(p, r, strict=True):
            log_z = leave_one_out_log_mean_exp(H * torch.stack([r1, r2])[None])[0, 0]
            log_tilt, c = H * r1, torch.exp(log_z) if baseline else torch.tensor(1.0, dtype=F64)
            if normalise:
                log_tilt, c = log_tilt - log_z, c * torch.exp(-log_z)
            terms.append((x1[list(MASKED)], log_tilt.expand(n), c.expand(n), torch.full((n,), float(p1 * p2))))
    student = torch.zeros(n, V, dtype=F64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [student],
        lr=1.0,
        max_iter=300,
        tolerance_grad=1e-12,
        tolerance_change=1e-15,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = sum(cdtm_loss(student, teacher_logits, t, lt, w, c) for t, lt, c, w in terms)
        loss.backward()
        return loss

    opt.step(closure)
    learned = student.detach().softmax(dim=-1)
    assert (learned - tilted).abs().max().item() < 1e-5
    assert (learned - base).abs().max().item() > 1e-2


@pytest.mark.parametrize("c", [0.0, 1.0, 2.5])
def test_cdtm_minimiser_with_an_inconsistent_teacher(c: float) -> None:
    """Rollouts from the law p, but teacher posteriors pi_a from another joint p' (a teacher whose posteriors are not
    the conditionals of its own decoding law). The minimiser is pi_q + (c / Z)(pi_a - pi_p), with pi_q and pi_p the
    exact conditionals of the tilted and untilted law and Z = E_p[exp(h r) | x_t]: only c = 0 keeps the exact tilt."""
    seqs, p, r = _toy(seed=3)
    other = _toy(seed=4)[1]
    clean_value = 0
    pi_p = _posterior(seqs, p, clean_value)
    pi_q = _posterior(seqs, p * torch.exp(H * r), clean_value)
    pi_a = _posterior(seqs, other, clean_value)
    keep = _consistent(seqs, clean_value)
    z = float((p[keep] * torch.exp(H * r[keep])).sum() / p[keep].sum())
    expected = pi_q + (c / z) * (pi_a - pi_p)
    rollouts = _enumerate_rollouts(seqs, p, r, clean_value, H)
    student = torch.zeros(len(MASKED), V, dtype=F64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [student],
        lr=1.0,
        max_iter=300,
        tolerance_grad=1e-12,
        tolerance_change=1e-15,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = _expected_cdtm(student, pi_a.log(), rollouts, c)
        loss.backward()
        return loss

    opt.step(closure)
    learned = student.detach().softmax(dim=-1)
    assert (learned - expected).abs().max().item() < 1e-5
    if c != 0:
        assert (learned - pi_q).abs().max().item() > 1e-2  # the teacher's inconsistency moved the minimiser

"""Tests for dtm.diffusion.masking: properties checked on many draws against independent statistics."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from dtm.diffusion.masking import MaskedState, mask_tokens, sar_masked_states, uniform_masked_states
from tests.shared import chi2_stat, chi2_threshold

VOCAB = 10
MASK_ID = 3
Z = 5.0  # tolerance in standard errors for frequency checks

SAR_SHAPES = [(G, B) for G in (4, 8, 12) for B in range(1, G + 1) if G % B == 0]


def random_response(rows: int, length: int, seed: int) -> torch.Tensor:
    """Token ids in [0, VOCAB) without the mask token, so ``noisy == MASK_ID`` identifies masked positions."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB - 1, (rows, length), generator=g)
    return ids + (ids >= MASK_ID).long()


def assert_frequency(count: float, total: float, p: float, what: str) -> None:
    """Binomial count within Z standard errors of total * p."""
    se = math.sqrt(max(total * p * (1 - p), 1e-12))
    assert abs(count - total * p) <= Z * se + 1e-9, f"{what}: {count} of {total}, expected p={p:.4f}"


def assert_consistent(state: MaskedState, response: torch.Tensor) -> None:
    assert state.masked.dtype == torch.bool and state.loss_mask.dtype == torch.bool
    assert state.noisy.shape == state.masked.shape == state.loss_mask.shape == response.shape
    assert state.mask_prob.shape == (response.shape[0],)
    assert torch.equal(state.noisy, torch.where(state.masked, torch.full_like(response, MASK_ID), response))
    assert torch.equal(state.masked, state.noisy == MASK_ID)
    assert not (state.loss_mask & ~state.masked).any()
    assert state.loss_mask.any(dim=1).all(), "a row has no loss position"


# ----------------------------------------------------------------------------------------------------------
# sar_masked_states
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("G", "B"), SAR_SHAPES)
def test_sar_states_are_reachable_by_sar_decoding(G, B):
    rows = 6000
    response = random_response(rows, G, seed=G * 100 + B)
    g = torch.Generator().manual_seed(G * 1000 + B)
    state = sar_masked_states(response, B, MASK_ID, generator=g)
    assert_consistent(state, response)

    masked = state.masked
    num_blocks = G // B
    per_block = masked.view(rows, num_blocks, B).sum(dim=2)  # masked count in each block
    # Active block = first block with a masked position (there must be one).
    has_masked = per_block > 0
    assert has_masked.any(dim=1).all()
    active = has_masked.float().argmax(dim=1)
    block_index = torch.arange(num_blocks)[None, :]
    before, after, here = (
        block_index < active[:, None],
        block_index > active[:, None],
        block_index == active[:, None],
    )
    assert (per_block[before] == 0).all(), "a block before the active block is not clean"
    assert (per_block[after] == B).all(), "a block after the active block is not fully masked"
    assert (per_block[here] >= 1).all() and (per_block[here] <= B).all()

    position_block = (torch.arange(G) // B)[None, :]
    expected_loss = masked & (position_block == active[:, None])
    assert torch.equal(state.loss_mask, expected_loss)

    n = masked.sum(dim=1)
    torch.testing.assert_close(state.mask_prob, n.float() / G)


@pytest.mark.parametrize(("G", "B"), SAR_SHAPES)
def test_sar_total_masked_count_is_uniform(G, B):
    rows = 12000
    response = random_response(rows, G, seed=7)
    state = sar_masked_states(response, B, MASK_ID, generator=torch.Generator().manual_seed(G * 31 + B))
    n = state.masked.sum(dim=1)
    assert n.min() >= 1 and n.max() <= G
    counts = torch.bincount(n - 1, minlength=G)
    for value in range(G):
        assert_frequency(float(counts[value]), rows, 1.0 / G, f"P(n={value + 1})")
    assert chi2_stat(counts, torch.full((G,), 1.0 / G)) < chi2_threshold(G - 1)


@pytest.mark.parametrize(("G", "B"), [s for s in SAR_SHAPES if s[1] > 1])
def test_sar_active_block_subset_marginals(G, B):
    """Given k masked in the active block, each position of that block is masked with probability k / B."""
    rows = 12000
    response = random_response(rows, G, seed=11)
    state = sar_masked_states(response, B, MASK_ID, generator=torch.Generator().manual_seed(G * 17 + B))
    num_blocks = G // B
    loss = state.loss_mask.view(rows, num_blocks, B)
    in_block = loss.any(dim=2)
    assert torch.equal(in_block.sum(dim=1), torch.ones(rows, dtype=torch.long)), "loss spans several blocks"
    active = in_block.float().argmax(dim=1)
    pattern = loss[torch.arange(rows), active]  # [rows, B] masked offsets within the active block
    k = pattern.sum(dim=1)
    for size in range(1, B + 1):
        rows_k = pattern[k == size]
        total = rows_k.shape[0]
        assert total > 0
        for offset in range(B):
            assert_frequency(float(rows_k[:, offset].sum()), total, size / B, f"k={size}, offset={offset}")


@pytest.mark.parametrize(("G", "B"), [(4, 4), (8, 4), (12, 3), (8, 2)])
def test_sar_active_block_subset_is_uniform_over_subsets(G, B):
    rows = 24000
    response = random_response(rows, G, seed=13)
    state = sar_masked_states(response, B, MASK_ID, generator=torch.Generator().manual_seed(G * 7 + B))
    loss = state.loss_mask.view(rows, G // B, B)
    active = loss.any(dim=2).float().argmax(dim=1)
    pattern = loss[torch.arange(rows), active].long()
    code = (pattern * (2 ** torch.arange(B))).sum(dim=1)
    k = pattern.sum(dim=1)
    for size in range(1, B):
        subsets = [sum(2**i for i in c) for c in itertools.combinations(range(B), size)]
        counts = torch.tensor([int((code[k == size] == s).sum()) for s in subsets])
        assert counts.sum() == int((k == size).sum()), "a pattern of this size is not a subset of the block"
        probs = torch.full((len(subsets),), 1.0 / len(subsets))
        assert chi2_stat(counts, probs) < chi2_threshold(len(subsets) - 1), f"k={size}: {counts.tolist()}"


@pytest.mark.parametrize(("G", "B"), [(8, 3), (12, 5), (4, 0), (4, -2), (6, 12)])
def test_sar_rejects_block_length_not_dividing(G, B):
    with pytest.raises(ValueError, match="block_length"):
        sar_masked_states(random_response(2, G, seed=0), B, MASK_ID)


def test_sar_same_seed_same_output_different_seed_differs():
    response = random_response(64, 12, seed=1)

    def draw(seed: int) -> MaskedState:
        return sar_masked_states(response, 4, MASK_ID, generator=torch.Generator().manual_seed(seed))

    a, b, c = draw(5), draw(5), draw(6)
    for field in ("noisy", "masked", "loss_mask", "mask_prob"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert not torch.equal(a.masked, c.masked)


def test_sar_does_not_modify_response():
    response = random_response(16, 8, seed=2)
    copy = response.clone()
    sar_masked_states(response, 2, MASK_ID, generator=torch.Generator().manual_seed(0))
    assert torch.equal(response, copy)


# ----------------------------------------------------------------------------------------------------------
# uniform_masked_states
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 3, 8])
def test_uniform_states_consistent_count_uniform_and_mask_prob(length):
    """k = #masked is uniform on {1..G}, mask_prob = k / G, and the loss covers every masked position."""
    rows = 12000
    response = random_response(rows, length, seed=length)
    state = uniform_masked_states(response, MASK_ID, generator=torch.Generator().manual_seed(3))
    assert_consistent(state, response)
    assert torch.equal(state.loss_mask, state.masked)
    k = state.masked.sum(dim=1)
    assert k.min() >= 1 and k.max() <= length
    torch.testing.assert_close(state.mask_prob, k.float() / length)
    assert (state.mask_prob > 0).all() and (state.mask_prob <= 1).all()
    counts = torch.bincount(k - 1, minlength=length)
    for value in range(length):
        assert_frequency(float(counts[value]), rows, 1.0 / length, f"P(k={value + 1})")
    if length > 1:
        assert chi2_stat(counts, torch.full((length,), 1.0 / length)) < chi2_threshold(length - 1)


@pytest.mark.parametrize("length", [4, 12])
def test_uniform_states_masked_frequency_matches_t(length):
    """Given t = k / G, every position is masked with probability t (a uniformly random k-subset)."""
    rows = 24000
    response = random_response(rows, length, seed=4)
    state = uniform_masked_states(response, MASK_ID, generator=torch.Generator().manual_seed(4))
    t = state.mask_prob
    # On average over rows and positions the masked fraction is E[t] = (G + 1) / (2G).
    assert_frequency(float(state.masked.sum()) / length, rows, (length + 1) / (2 * length), "mean fraction")
    for k in range(1, length + 1):
        rows_k = state.masked[torch.isclose(t, torch.tensor(k / length))]
        assert rows_k.shape[0] > 0
        for pos in range(length):
            assert_frequency(float(rows_k[:, pos].sum()), rows_k.shape[0], k / length, f"k={k}, pos={pos}")


def test_uniform_states_subset_is_uniform():
    rows, length = 24000, 4
    response = random_response(rows, length, seed=10)
    state = uniform_masked_states(response, MASK_ID, generator=torch.Generator().manual_seed(10))
    code = (state.masked.long() * (2 ** torch.arange(length))).sum(dim=1)
    k = state.masked.sum(dim=1)
    for size in range(1, length):
        subsets = [sum(2**i for i in c) for c in itertools.combinations(range(length), size)]
        counts = torch.tensor([int((code[k == size] == s).sum()) for s in subsets])
        probs = torch.full((len(subsets),), 1.0 / len(subsets))
        assert chi2_stat(counts, probs) < chi2_threshold(len(subsets) - 1), f"k={size}: {counts.tolist()}"


def test_uniform_states_seeded():
    response = random_response(32, 16, seed=6)
    a = uniform_masked_states(response, MASK_ID, generator=torch.Generator().manual_seed(1))
    b = uniform_masked_states(response, MASK_ID, generator=torch.Generator().manual_seed(1))
    c = uniform_masked_states(response, MASK_ID, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a.masked, b.masked) and torch.equal(a.mask_prob, b.mask_prob)
    assert not torch.equal(a.masked, c.masked)


# ----------------------------------------------------------------------------------------------------------
# mask_tokens
# ----------------------------------------------------------------------------------------------------------


def test_mask_tokens_row_fraction_matches_mask_prob():
    rows, length = 11, 5000
    response = random_response(rows, length, seed=8)
    mask_prob = torch.linspace(0, 1, rows)
    noisy, masked = mask_tokens(response, mask_prob, MASK_ID, generator=torch.Generator().manual_seed(8))
    assert masked.dtype == torch.bool and masked.shape == response.shape
    assert torch.equal(noisy, response.masked_fill(masked, MASK_ID))
    assert torch.equal(masked, noisy == MASK_ID)
    assert not masked[0].any() and masked[-1].all()
    for row in range(rows):
        assert_frequency(float(masked[row].sum()), length, float(mask_prob[row]), f"row {row}")


def test_mask_tokens_positions_are_independent_of_position():
    """Each column is masked with the same probability (no positional bias)."""
    rows, length, p = 20000, 6, 0.3
    response = random_response(rows, length, seed=9)
    g = torch.Generator().manual_seed(9)
    _, masked = mask_tokens(response, torch.full((rows,), p), MASK_ID, generator=g)
    for col in range(length):
        assert_frequency(float(masked[:, col].sum()), rows, p, f"column {col}")


def test_model_inputs_put_the_prompt_first_and_select_only_response_positions():
    from dtm.diffusion.masking import model_inputs

    prompt = torch.tensor([[0, 5, 6], [7, 8, 9]])
    prompt_mask = torch.tensor([[0, 1, 1], [1, 1, 1]])
    response = torch.tensor([[1, 2], [3, 1]])
    chosen = torch.tensor([[True, False], [False, True]])
    ids, select, attention = model_inputs(prompt, prompt_mask, response, chosen)
    assert ids.tolist() == [[0, 5, 6, 1, 2], [7, 8, 9, 3, 1]]
    assert select.tolist() == [[False, False, False, True, False], [False, False, False, False, True]]
    assert attention.tolist() == [[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]]

"""Tests for dtm.studies.maze_laws: exact path laws on mazes, tilted targets, effective tilt and the DTM loss gain.

The loss identities are checked by brute force on a tiny vocabulary: every response, every SAR masked state and the
exact conditionals of the tilted target are enumerated.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from dtm.config.sampling import SamplingConfig, check_exact_sampler
from dtm.diffusion.exact import sequence_log_probs
from dtm.models import TinyModelConfig, build_tiny_model
from dtm.rollouts import rollout
from dtm.studies import metrics
from dtm.studies.maze_laws import (
    MazePaths,
    Outcomes,
    Responses,
    distinct_mazes,
    effective_tilt,
    expected_reward,
    loss_gain,
    maze_paths,
    outcomes,
    path_law,
    tilted,
    total_variation,
)
from dtm.tasks.base import PromptBatch
from dtm.tasks.maze import MazeTask, enumerate_valid_paths, path_key, vocab_size_for

VOCAB, MASK, G, B = 4, 3, 4, 2
SAMPLING = SamplingConfig(gen_length=G, block_length=B, decode_steps=G, temperature=1.0, remasking="random")


def random_model(seed: int, vocab: int = VOCAB, mask: int = MASK, std: float = 0.5):
    torch.manual_seed(seed)
    cfg = TinyModelConfig(
        vocab_size=vocab,
        mask_token_id=mask,
        hidden_size=16,
        num_layers=2,
        num_heads=2,
        intermediate_size=32,
        max_length=64,
    )
    model = build_tiny_model(cfg).eval().double().requires_grad_(False)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:
                param.normal_(0.0, std)
    return model


ALL = torch.tensor(list(itertools.product(range(MASK), repeat=G)))  # the 81 responses without the mask token
PROMPTS = PromptBatch(torch.tensor([[0, 2], [1, 1]]), torch.ones(2, 2, dtype=torch.long), [{}, {}])


def reward_of(x: torch.Tensor) -> float:
    """A toy reward: 0 ("invalid") unless the response starts with token 0, else in (0, 1]."""
    return 0.0 if int(x[0]) != 0 else (1 + int(x.sum())) / 9


def toy_paths() -> tuple[MazePaths, Responses]:
    """The rewarded responses of both prompts as 'valid paths', the others as 'invalid'."""
    valid, invalid = [], []
    for m in range(2):
        for x in ALL:
            (valid if reward_of(x) > 0 else invalid).append((m, x))
    paths = MazePaths(
        PROMPTS,
        torch.stack([x for _, x in valid]),
        torch.tensor([m for m, _ in valid]),
        torch.tensor([reward_of(x) for _, x in valid], dtype=torch.float64),
    )
    rest = Responses(PROMPTS, torch.stack([x for _, x in invalid]), torch.tensor([m for m, _ in invalid]))
    return paths, rest


def sar_states(x: tuple[int, ...]):
    """Every SAR masked state of response x with its probability: n ~ U{1..G}, then a uniform subset of the active
    block; yields (probability, noisy response, loss positions)."""
    for n in range(1, G + 1):
        full_blocks = (n - 1) // B
        active = G // B - 1 - full_blocks
        m = (n - 1) % B + 1
        block = range(active * B, active * B + B)
        for subset in itertools.combinations(block, m):
            noisy = [MASK if (i in subset or i >= (active + 1) * B) else x[i] for i in range(G)]
            yield 1 / G / math.comb(B, m), noisy, subset


def brute_force_loss(posterior, law_a: dict, h: float) -> float:
    """E over prompts, x ~ p_a and SAR states of exp(h r) (1/m) sum_{i in M} -log posterior(x_i | x_t)."""
    total = 0.0
    for m in range(2):
        for x, p in law_a[m].items():
            w = math.exp(h * reward_of(torch.tensor(x)))
            for p_state, noisy, subset in sar_states(x):
                logp = posterior(m, noisy)
                total += p * p_state * w * sum(-logp[i][x[i]] for i in subset) / len(subset)
    return total / 2


def model_posterior(model):
    def posterior(m: int, noisy: list[int]):
        ids = torch.tensor([[*PROMPTS.ids[m].tolist(), *noisy]])
        logits = model(ids)[0, 2:]
        logits[:, MASK] = -math.inf  # the sampler never proposes the mask token
        return logits.log_softmax(-1).tolist()

    return posterior


def target_posterior(law_a: dict, h: float):
    """The exact conditionals of q ∝ p_a exp(h r): P_q(X_i = v | the unmasked tokens of x_t)."""

    def posterior(m: int, noisy: list[int]):
        out = [[0.0] * VOCAB for _ in range(G)]
        for x, p in law_a[m].items():
            if all(t in (MASK, xi) for t, xi in zip(noisy, x, strict=True)):
                weight = p * math.exp(h * reward_of(torch.tensor(x)))
                for i in range(G):
                    out[i][x[i]] += weight
        return [[math.log(v / sum(row)) if v > 0 else -math.inf for v in row] for row in out]

    return posterior


def full_law(model) -> dict[int, dict[tuple, float]]:
    out = {}
    for m in range(2):
        lp = sequence_log_probs(model, PROMPTS.ids[m : m + 1].expand(len(ALL), -1), ALL, B, G, mask_token_id=MASK)
        out[m] = {tuple(x): float(p) for x, p in zip(ALL.tolist(), lp.log_prob.exp(), strict=True)}
    return out


@pytest.mark.parametrize("h", [0.7, 3.0])
def test_loss_gain_and_its_maximum_match_brute_force(h):
    teacher, student = random_model(0), random_model(1)
    paths, rest = toy_paths()
    law_t, law_s = path_law(teacher, paths, SAMPLING), path_law(student, paths, SAMPLING)
    inv_t = sequence_log_probs(teacher, PROMPTS.ids[rest.maze_of], rest.responses, B, G, mask_token_id=MASK)
    inv_s = sequence_log_probs(student, PROMPTS.ids[rest.maze_of], rest.responses, B, G, mask_token_id=MASK)
    p_inv = law_t.invalid[rest.maze_of]
    gain, maximum = loss_gain(law_t, law_s, h, rest, inv_t, inv_s, invalid_weights=inv_t.log_prob.exp() / p_inv)

    exact_a = full_law(teacher)
    loss_teacher = brute_force_loss(model_posterior(teacher), exact_a, h)
    loss_student = brute_force_loss(model_posterior(student), exact_a, h)
    loss_min = brute_force_loss(target_posterior(exact_a, h), exact_a, h)
    assert gain == pytest.approx(loss_teacher - loss_student, rel=1e-9, abs=1e-12)
    assert maximum == pytest.approx(loss_teacher - loss_min, rel=1e-9, abs=1e-12)
    assert maximum > max(gain, 0)


def test_loss_gain_monte_carlo_part_uses_plain_means():
    """Without weights, the invalid part is the plain mean over each maze's draws: listing every invalid response
    once per unit of (rounded) probability reproduces the weighted value."""
    teacher, student = random_model(0), random_model(1)
    paths, rest = toy_paths()
    law_t, law_s = path_law(teacher, paths, SAMPLING), path_law(student, paths, SAMPLING)
    inv_t = sequence_log_probs(teacher, PROMPTS.ids[rest.maze_of], rest.responses, B, G, mask_token_id=MASK)
    inv_s = sequence_log_probs(student, PROMPTS.ids[rest.maze_of], rest.responses, B, G, mask_token_id=MASK)
    copies = torch.full((len(rest.maze_of),), 3)
    copies[::2] = 1
    repeated = Responses(PROMPTS, rest.responses.repeat_interleave(copies, 0), rest.maze_of.repeat_interleave(copies))

    def rep(law):
        return type(law)(law.log_prob.repeat_interleave(copies), law.elbo.repeat_interleave(copies))

    plain = loss_gain(law_t, law_s, 1.0, repeated, rep(inv_t), rep(inv_s))
    weights = copies.double() / rest.per_maze(copies.double())[rest.maze_of]
    weighted = loss_gain(law_t, law_s, 1.0, rest, inv_t, inv_s, invalid_weights=weights)
    assert plain == pytest.approx(weighted, rel=1e-12)


def test_tilted_and_tv_agree_with_the_dict_metrics():
    law = path_law(random_model(2), toy_paths()[0], SAMPLING)
    paths = law.paths
    p = outcomes(law)
    q = tilted(p, paths, 2.5)
    tv = total_variation(p, q, paths)
    for m in range(2):
        rows = (paths.maze_of == m).nonzero().flatten().tolist()
        dist = {str(k): float(p.valid[k]) for k in rows} | {"invalid": float(p.invalid[m])}
        rewards = {str(k): float(paths.rewards[k]) for k in rows} | {"invalid": 0.0}
        target = metrics.tilt(dist, rewards, 2.5)
        for k in rows:
            assert float(q.valid[k]) == pytest.approx(target[str(k)], rel=1e-9)
        assert float(q.invalid[m]) == pytest.approx(target["invalid"], rel=1e-9)
        assert float(tv[m]) == pytest.approx(metrics.total_variation(dist, target), rel=1e-9)
        assert float(expected_reward(q, paths)[m]) == pytest.approx(sum(target[k] * rewards[k] for k in target))
    assert float(p.valid.sum() + p.invalid.sum()) == pytest.approx(2.0, abs=1e-9)


@pytest.mark.parametrize("t0", [-0.8, 0.0, 1.3, 4.2])
def test_effective_tilt_recovers_a_known_tilt(t0):
    law = path_law(random_model(3), toy_paths()[0], SAMPLING)
    p = outcomes(law)
    student = tilted(p, law.paths, t0)
    assert effective_tilt(student, p, law.paths, -2.0, 6.0, points=801) == pytest.approx(t0, abs=0.01)
    other = Outcomes(student.valid.flip(0), student.invalid)  # not a tilt of p: some distance remains
    assert total_variation(other, tilted(p, law.paths, t0), law.paths).mean() > 0


@pytest.fixture(scope="module")
def maze_task():
    return MazeTask(size=3, extra_openings=3, gen_length=8)


def test_maze_paths_are_every_valid_response(maze_task):
    prompts = distinct_mazes(maze_task, 5, "test")
    assert len({m["maze_id"] for m in prompts.meta}) == 5
    paths = maze_paths(maze_task, prompts)
    for m, meta in enumerate(prompts.meta):
        rows = paths.maze_of == m
        assert int(rows.sum()) == len(enumerate_valid_paths(meta, 8))
    rewards = maze_task.reward(paths.responses, [prompts.meta[m] for m in paths.maze_of.tolist()])
    torch.testing.assert_close(rewards.double(), paths.rewards)
    assert len({(int(m), tuple(r)) for m, r in zip(paths.maze_of, paths.responses.tolist(), strict=True)}) == len(
        paths.maze_of
    )
    with pytest.raises(ValueError, match="distinct mazes"):
        distinct_mazes(maze_task, 200, "train")


def test_maze_law_matches_sampled_outcomes(maze_task):
    """The exact law of a (random) model on a real maze agrees with 6,000 of its own rollouts."""
    model = random_model(4, vocab=vocab_size_for(3), mask=1, std=0.3).float()
    sampling = SamplingConfig(gen_length=8, block_length=4, decode_steps=8, temperature=1.0, remasking="random")
    prompts = distinct_mazes(maze_task, 1, "test")
    paths = maze_paths(maze_task, prompts)
    law = path_law(model, paths, sampling)
    n = 6000
    drawn = rollout(model, prompts.select([0] * n), sampling, torch.Generator().manual_seed(0))
    keys = [path_key(r, prompts.meta[0]) for r in drawn]
    valid = maze_task.reward(drawn, [prompts.meta[0]] * n) > 0
    freq = metrics.empirical(k if ok else "invalid" for k, ok in zip(keys, valid.tolist(), strict=True))
    moves = enumerate_valid_paths(prompts.meta[0], 8)
    exact = {mv: float(p) for mv, p in zip(moves, law.prob, strict=True)} | {"invalid": float(law.invalid[0])}
    assert law.invalid[0] > 0.05  # a random model is often invalid: both parts are exercised
    assert metrics.total_variation(freq, exact) < 0.03


def test_check_exact_sampler():
    check_exact_sampler(SamplingConfig(gen_length=8, block_length=4, decode_steps=8, remasking="random"), 8)
    with pytest.raises(ValueError, match=r"remasking.*steps.*temperature"):
        check_exact_sampler(SamplingConfig(gen_length=8, block_length=4, decode_steps=4, temperature=0.5), 8)

"""Exact path laws of a model on mazes, and how far a student is from its tilted target.

On a maze small enough to list its valid responses (:func:`dtm.tasks.maze.enumerate_valid_paths`), the law of a model
under SAR decoding (:func:`dtm.diffusion.exact.sequence_log_probs`) is known exactly on the outcomes {each valid
path, "invalid"}: the invalid outcome (reward 0) holds the remaining mass. Tilting by exp(t r) only reweights these
outcomes, so every tilted target is exact too:

    rho_t(x) = p(x) exp(t r(x)) / Z_t,   rho_t(invalid) = p(invalid) / Z_t,   Z_t = sum_valid p e^{t r} + p(invalid).

A DTM phase a -> a + h distils the teacher pi_a into a student whose exact target is the teacher's law tilted by h.
The metrics here compare laws on these outcomes (per maze, then averaged over mazes): total variation, the effective
tilt h_eff = argmin_t mean TV(student, teacher tilted by t), the expected reward, and the held-out DTM loss gain
against its maximum (:func:`loss_gain`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from dtm.config.sampling import SamplingConfig
from dtm.diffusion.exact import SequenceLaw, sequence_log_probs
from dtm.models.base import DiffusionLM
from dtm.tasks.base import PromptBatch
from dtm.tasks.maze import MazeTask, enumerate_valid_paths, moves_to_response


@dataclass
class Responses:
    """Responses on a set of mazes, flattened: response k ``[G]`` answers maze ``maze_of[k]`` of ``prompts``."""

    prompts: PromptBatch
    responses: torch.Tensor  # [K, G]
    maze_of: torch.Tensor  # [K] long

    @property
    def num_mazes(self) -> int:
        return len(self.prompts)

    def per_maze(self, values: torch.Tensor) -> torch.Tensor:
        """Sum of per-response ``values`` over each maze ``[M]``."""
        return torch.zeros(self.num_mazes, dtype=values.dtype).index_add_(0, self.maze_of, values)


@dataclass
class MazePaths(Responses):
    """Every valid response of each maze, with its reward ``[K]`` (float64)."""

    rewards: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.float64))


def maze_paths(task: MazeTask, prompts: PromptBatch) -> MazePaths:
    """The valid responses (simple start -> goal paths within ``gen_length`` moves) of every maze, with rewards."""
    responses, rewards, maze_of = [], [], []
    for m, meta in enumerate(prompts.meta):
        for moves in enumerate_valid_paths(meta, task.gen_length):
            responses.append(moves_to_response(meta, moves, task.gen_length))
            rewards.append(meta["shortest_length"] / len(moves))
            maze_of.append(m)
    return MazePaths(
        prompts,
        torch.tensor(responses, dtype=torch.long),
        torch.tensor(maze_of, dtype=torch.long),
        torch.tensor(rewards, dtype=torch.float64),
    )


def distinct_mazes(task: MazeTask, count: int, split: str, seed: int = 0) -> PromptBatch:
    """``count`` distinct mazes of a split (raises ValueError if the split has fewer)."""
    seen: dict[str, int] = {}
    pool = task.prompts(max(8 * count, 256), split=split, seed=seed)
    for i, meta in enumerate(pool.meta):
        seen.setdefault(meta["maze_id"], i)
    if len(seen) < count:
        raise ValueError(f"the {split} split has only {len(seen)} distinct mazes, fewer than the {count} asked for")
    return pool.select(list(seen.values())[:count])


def sequence_law(model: DiffusionLM, responses: Responses, sampling: SamplingConfig) -> SequenceLaw:
    """Exact log P and ELBO of every response under the sampler that ``sampling`` describes."""
    was_training = model.training
    model.eval()
    prompts = responses.prompts
    law = sequence_log_probs(
        model,
        prompts.ids[responses.maze_of],
        responses.responses,
        sampling.block_length,
        sampling.decode_steps,
        mask_token_id=model.mask_token_id,
        temperature=sampling.temperature,
        remasking=sampling.remasking,
        attention_mask=prompts.attention_mask[responses.maze_of],
        batch_size=sampling.decode_batch * 4,
        threshold=sampling.threshold,
        cache=sampling.cache,
        cache_refresh=sampling.cache_refresh,
    )
    model.train(was_training)
    return law


@dataclass
class PathLaw:
    """A model's exact law on ``paths``: log P and ELBO of every valid response ``[K]``, invalid mass per maze."""

    paths: MazePaths
    log_prob: torch.Tensor
    elbo: torch.Tensor

    @property
    def prob(self) -> torch.Tensor:
        return self.log_prob.exp()

    @property
    def invalid(self) -> torch.Tensor:
        """1 - sum of the valid paths' probabilities, per maze ``[M]`` (clamped at 0 against rounding)."""
        return (1 - self.paths.per_maze(self.prob)).clamp_min(0)


def path_law(model: DiffusionLM, paths: MazePaths, sampling: SamplingConfig) -> PathLaw:
    """The exact law of ``model`` on every maze of ``paths``."""
    law = sequence_law(model, paths, sampling)
    return PathLaw(paths, law.log_prob, law.elbo)


@dataclass
class Outcomes:
    """A distribution over each maze's outcomes: valid paths ``[K]`` and the invalid outcome ``[M]``."""

    valid: torch.Tensor
    invalid: torch.Tensor


def outcomes(law: PathLaw) -> Outcomes:
    return Outcomes(law.prob, law.invalid)


def tilted(dist: Outcomes, paths: MazePaths, t: float) -> Outcomes:
    """rho_t ∝ dist exp(t r) per maze (the invalid outcome has r = 0)."""
    weights = dist.valid * torch.exp(t * paths.rewards)
    z = paths.per_maze(weights) + dist.invalid
    return Outcomes(weights / z[paths.maze_of], dist.invalid / z)


def total_variation(p: Outcomes, q: Outcomes, paths: MazePaths) -> torch.Tensor:
    """TV per maze ``[M]``: half the L1 distance over the valid paths and the invalid outcome."""
    return 0.5 * (paths.per_maze((p.valid - q.valid).abs()) + (p.invalid - q.invalid).abs())


def expected_reward(dist: Outcomes, paths: MazePaths) -> torch.Tensor:
    """E[r] per maze ``[M]``."""
    return paths.per_maze(dist.valid * paths.rewards)


def effective_tilt(
    student: Outcomes, teacher: Outcomes, paths: MazePaths, t_min: float, t_max: float, points: int = 401
) -> float:
    """h_eff: the tilt t in [t_min, t_max] (a grid of ``points``) whose tilted teacher is closest to the student in
    mean TV over mazes."""
    grid = torch.linspace(t_min, t_max, points, dtype=torch.float64)
    distances = torch.stack([total_variation(student, tilted(teacher, paths, float(t)), paths).mean() for t in grid])
    return float(grid[distances.argmin()])


def loss_gain(
    teacher: PathLaw,
    student: PathLaw,
    h: float,
    invalid: Responses,
    teacher_invalid: SequenceLaw,
    student_invalid: SequenceLaw,
    invalid_weights: torch.Tensor | None = None,
) -> tuple[float, float]:
    """The expected c = 0 DTM loss of the teacher minus the student's (the gain), and the largest gain any student
    can have, both averaged over mazes as the trainer averages over prompts. One token per round, random order.

    With q = p_a e^{h r} / Z the phase's target and SAR states drawn as the trainer draws them, the expected loss is
    L(theta) = (Z / G) E_q[-elbo_theta(x)] (see :mod:`dtm.diffusion.exact`), so

        gain    = (Z / G) E_q[elbo_theta - elbo_a]
        maximum = (Z / G) (KL(q || p_a) + E_q[log p_a - elbo_a]),    KL(q || p_a) = h E_q[r] - log Z

    (the maximum is reached by the exact conditionals of q, whose ELBO is tight). Posteriors here exclude the mask
    token, as the sampler does; the trainer's loss keeps it in the softmax, which adds -log(1 - pi(mask)) per
    position (negligible once pretraining has driven pi(mask) to 0). E_q is exact over the valid paths;
    over the invalid responses (where q ∝ p_a) it is a Monte Carlo mean over ``invalid``, invalid responses sampled
    from the teacher on the same mazes, with their teacher law and student ELBO (``invalid_weights``, summing to 1
    per maze, replace the plain mean, e.g. by p_a(x) / p_a(invalid) when every invalid response is listed). A maze
    without invalid draws contributes its exact valid part only.
    """
    paths = teacher.paths
    p_a = outcomes(teacher)
    q = tilted(p_a, paths, h)
    z = paths.per_maze(p_a.valid * torch.exp(h * paths.rewards)) + p_a.invalid
    kl = h * expected_reward(q, paths) - z.log()
    if invalid_weights is None:
        count = invalid.per_maze(torch.ones(len(invalid.maze_of), dtype=torch.float64))
        invalid_weights = 1 / count[invalid.maze_of]

    def invalid_mean(values: torch.Tensor) -> torch.Tensor:
        return invalid.per_maze(invalid_weights * values)

    gain = paths.per_maze(q.valid * (student.elbo - teacher.elbo))
    gain = gain + q.invalid * invalid_mean(student_invalid.elbo - teacher_invalid.elbo)
    gap = paths.per_maze(q.valid * (teacher.log_prob - teacher.elbo))
    gap = gap + q.invalid * invalid_mean(teacher_invalid.log_prob - teacher_invalid.elbo)
    scale = z / paths.responses.shape[1]
    return float((scale * gain).mean()), float((scale * (kl + gap)).mean())

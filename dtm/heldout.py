"""Held-out measurement of a model on a task's prompts, the one used by the trainers' evaluations
(:func:`eval_record`), the studies and the demo: one greedy response per prompt and ``samples`` samples per prompt at
the rollout temperature, drawn once by :func:`heldout_rollouts`; :func:`rollout_metrics` turns them into greedy and
sampled reward and accuracy and the diversity of the samples, and a study adds its task's own metrics from the same
responses."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import torch

from dtm.config.sampling import SamplingConfig
from dtm.models.base import DiffusionLM
from dtm.rollouts import rollout
from dtm.tasks.base import PromptBatch, TokenTask


@dataclass
class HeldoutRollouts:
    """Responses to ``prompts``: ``greedy`` [N, L] and ``sampled`` [N * samples, L], whose rows answer ``repeated``
    (each prompt ``samples`` times, consecutively)."""

    prompts: PromptBatch
    greedy: torch.Tensor
    repeated: PromptBatch
    sampled: torch.Tensor
    samples: int


@torch.no_grad()
def heldout_rollouts(
    model: DiffusionLM, prompts: PromptBatch, sampling: SamplingConfig, samples: int = 1, seed: int = 0
) -> HeldoutRollouts:
    """Greedy decoding of every prompt, then ``samples`` samples per prompt; ``seed`` drives the sampling only."""
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    greedy = rollout(model, prompts, sampling, generator, temperature=0.0)
    repeated = prompts.select(torch.arange(len(prompts)).repeat_interleave(samples))
    sampled = rollout(model, repeated, sampling, generator)
    return HeldoutRollouts(prompts, greedy, repeated, sampled, samples)


def rollout_metrics(task: TokenTask, rollouts: HeldoutRollouts) -> dict[str, float]:
    """Greedy reward/accuracy and sampled reward/accuracy, distinct responses / samples and distinct correct
    responses, averaged over prompts."""
    correct = task.is_correct(rollouts.sampled, rollouts.repeated.meta)
    return {
        "greedy_reward": task.reward(rollouts.greedy, rollouts.prompts.meta).mean().item(),
        "greedy_accuracy": task.is_correct(rollouts.greedy, rollouts.prompts.meta).float().mean().item(),
        "sampled_reward": task.reward(rollouts.sampled, rollouts.repeated.meta).mean().item(),
        "sampled_accuracy": correct.float().mean().item(),
    } | diversity(rollouts.sampled, correct, rollouts.samples)


def heldout_metrics(
    model: DiffusionLM, task: TokenTask, prompts: PromptBatch, sampling: SamplingConfig, samples: int = 1, seed: int = 0
) -> dict[str, float]:
    """:func:`rollout_metrics` of fresh :func:`heldout_rollouts`."""
    return rollout_metrics(task, heldout_rollouts(model, prompts, sampling, samples, seed))


@torch.no_grad()
def eval_record(
    model: DiffusionLM, task: TokenTask, num_prompts: int, sampling: SamplingConfig, seed: int = 0
) -> dict[str, float]:
    """The held-out record a trainer logs at each evaluation (``eval_*`` keys; :func:`heldout_metrics` with one sample
    per prompt): greedy and sampled reward and accuracy. The prompts are the test split's seed-0 draw for every run;
    ``seed`` drives the sampling only, so runs with different seeds are measured on the same problems."""
    prompts = task.prompts(num_prompts, split="test", seed=0)
    metrics = heldout_metrics(model, task, prompts, sampling, samples=1, seed=seed)
    return {
        "eval_reward_greedy": metrics["greedy_reward"],
        "eval_accuracy_greedy": metrics["greedy_accuracy"],
        "eval_reward_sampled": metrics["sampled_reward"],
        "eval_accuracy_sampled": metrics["sampled_accuracy"],
    }


def diversity(responses: torch.Tensor, correct: torch.Tensor, samples: int) -> dict[str, float]:
    """From ``samples`` consecutive responses per prompt: distinct responses / samples, and the number of distinct
    correct responses (e.g. different shortest paths), each averaged over prompts."""
    keys = [tuple(row) for row in responses.tolist()]
    ok = correct.tolist()
    distinct, distinct_correct = [], []
    for start in range(0, len(keys), samples):
        rows = range(start, start + samples)
        distinct.append(len({keys[j] for j in rows}) / samples)
        distinct_correct.append(len({keys[j] for j in rows if ok[j]}))
    return {"distinct": statistics.fmean(distinct), "distinct_correct": statistics.fmean(distinct_correct)}

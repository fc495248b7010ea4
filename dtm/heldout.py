"""Held-out measurement of a model on a task's prompts, the one used by the trainers' evaluations and the studies:
greedy reward and accuracy, and from ``samples`` samples per prompt at the rollout temperature, sampled reward and
accuracy and the diversity of the samples."""

from __future__ import annotations

import statistics

import torch

from dtm.config.sampling import SamplingConfig
from dtm.models.base import DiffusionLM
from dtm.rollouts import rollout
from dtm.tasks.base import PromptBatch, TokenTask


@torch.no_grad()
def heldout_metrics(
    model: DiffusionLM, task: TokenTask, prompts: PromptBatch, sampling: SamplingConfig, samples: int = 1, seed: int = 0
) -> dict[str, float]:
    """Greedy reward/accuracy and, from ``samples`` samples per prompt, sampled reward/accuracy, distinct responses /
    samples and distinct correct responses, averaged over prompts. ``seed`` drives the sampling only."""
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    greedy = rollout(model, prompts, sampling, generator, temperature=0.0)
    repeated = prompts.select(torch.arange(len(prompts)).repeat_interleave(samples))
    sampled = rollout(model, repeated, sampling, generator)
    correct = task.is_correct(sampled, repeated.meta)
    return {
        "greedy_reward": task.reward(greedy, prompts.meta).mean().item(),
        "greedy_accuracy": task.is_correct(greedy, prompts.meta).float().mean().item(),
        "sampled_reward": task.reward(sampled, repeated.meta).mean().item(),
        "sampled_accuracy": correct.float().mean().item(),
    } | diversity(sampled, correct, samples)


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

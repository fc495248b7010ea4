"""The CPU demo: pretrain the built-in model on the ``increment`` task, tilt it with DTM, and check the result
against the exact tilted target (known in closed form for this task)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dtm.config.sampling import SamplingConfig
from dtm.heldout import heldout_rollouts, rollout_metrics
from dtm.models.base import DiffusionLM
from dtm.tasks.increment import IncrementTask
from dtm.training.dtm import DTMConfig, DTMTrainer
from dtm.training.pretrain import PretrainConfig, pretrain


def measure(model: DiffusionLM, task: IncrementTask, sampling: SamplingConfig, n: int, seed: int) -> dict[str, float]:
    """The shared held-out metrics (:mod:`dtm.heldout`, one sample per prompt) with, from the same samples, their
    validity and P(digit incremented | valid), the quantity the closed form predicts."""
    rollouts = heldout_rollouts(model, task.prompts(n, split="test", seed=seed), sampling, samples=1, seed=seed)
    valid, incremented = task.parse(rollouts.sampled, rollouts.repeated.meta)
    return rollout_metrics(task, rollouts) | {
        "valid": valid.float().mean().item(),
        "p_increment": incremented[valid].float().mean().item() if valid.any() else float("nan"),
    }


def run_demo(out: Path, quick: bool = False, progress: bool = True, seed: int = 0) -> dict[str, Any]:
    """Run the demo into ``out``; return (and write to ``out/results.json``) the base vs DTM comparison."""
    out.mkdir(parents=True, exist_ok=True)
    task = IncrementTask()
    pre_cfg = PretrainConfig(task=task.name, steps=150 if quick else 800, output_dir=str(out / "pretrain"), seed=seed)
    base = pretrain(pre_cfg, overwrite=True, progress=progress)
    dtm_cfg = DTMConfig(
        base_model=str(out / "pretrain" / "model"),
        task=task.name,
        h=2.0,
        a_end=6.0,
        steps_per_h=5 if quick else 30,
        output_dir=str(out / "dtm"),
        eval_prompts=0,
        seed=seed,
    )
    base_metrics = measure(base, task, dtm_cfg.sampling, 512, seed)
    trainer = DTMTrainer(dtm_cfg, model=base, task=task, overwrite=True, progress=progress)
    tuned_metrics = measure(trainer.train(), task, dtm_cfg.sampling, 512, seed)
    result = {
        "a_end": dtm_cfg.a_end,
        "base": base_metrics,
        "dtm": tuned_metrics,
        "exact_p_increment": {"base": task.p_increment, "dtm": task.tilted_increment_probability(dtm_cfg.a_end)},
    }
    (out / "results.json").write_text(json.dumps(result, indent=2))
    return result

"""The maze-planning study: how the annealing step h and the control variate c decide reward, stability and mode
collapse (the project's main job; ``dtm study maze``).

One base model (the built-in model pretrained on random self-avoiding walks, see :mod:`dtm.tasks.maze`) is tuned
with DTM to the same final tilt ``a_end`` in six arms: {several small phases, one large phase} x {c = 0, c = 1,
adaptive c*}, all with the same seed and the same number of optimizer steps. Every model, the base included, is then
measured on held-out mazes, and on a few of them its path distribution is compared with the exact tilted target
rho_a ∝ p_base exp(a r), with p_base estimated from base-model samples (all valid paths of a 4 x 4 maze can be listed,
and invalid responses form one extra outcome with reward 0).
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dtm.config import check, save_config
from dtm.models import TinyModelConfig, load_model
from dtm.models.base import DiffusionLM
from dtm.sampling import SamplingConfig, rollout
from dtm.studies.figures import new_axes, save_figure
from dtm.studies.metrics import empirical, entropy, tilt, total_variation
from dtm.tasks.base import PromptBatch
from dtm.tasks.maze import MazeTask, count_shortest_paths, path_key
from dtm.training.dtm import DTMConfig, DTMTrainer
from dtm.training.logging import prepare_run_dir
from dtm.training.pretrain import PretrainConfig, pretrain

INVALID = "<invalid>"


@dataclass
class MazeStudyConfig:
    """Settings of the maze study (those of ``configs/maze-study.yaml`` take about 6 minutes on 2 CPU cores)."""

    output_dir: str = "runs/maze-study"
    seed: int = 0
    # Task: size x size mazes with extra openings (loops); see dtm.tasks.maze.
    maze_size: int = 3
    maze_extra_openings: int = 3
    # Base model.
    model: TinyModelConfig = field(
        default_factory=lambda: TinyModelConfig(hidden_size=128, num_layers=4, intermediate_size=256, max_length=64)
    )
    pretrain_steps: int = 1200
    pretrain_lr: float = 2e-3
    # DTM arms: a_end reached in a_end / small_h phases, or in one phase; the same steps in total per arm.
    a_end: float = 12.0
    small_h: float = 3.0
    total_steps: int = 240
    controls: list[str] = field(default_factory=lambda: ["0", "1", "adaptive"])
    lr: float = 1e-3
    buffer_prompts: int = 64
    buffer_completions: int = 8
    micro_batch: int = 32
    # Random-order unmasking samples the model's own path distribution; confidence-ordered unmasking does not.
    sampling: SamplingConfig = field(
        default_factory=lambda: SamplingConfig(gen_length=8, block_length=4, steps=8, remasking="random")
    )
    # Evaluation.
    eval_mazes: int = 64
    samples_per_maze: int = 8
    tv_mazes: int = 4
    tv_samples: int = 1000

    def __post_init__(self) -> None:
        check(self.a_end >= self.small_h > 0, "small_h", f"must be in (0, a_end={self.a_end}], got {self.small_h}")
        phases = math.ceil(self.a_end / self.small_h - 1e-9)
        check(
            self.total_steps % phases == 0,
            "total_steps",
            f"must be a multiple of the {phases} small-h phases, got {self.total_steps}",
        )
        for c in self.controls:
            check(c == "adaptive" or _is_float(c), "controls", f"entries must be numbers or 'adaptive', got {c!r}")
        check(self.tv_mazes <= self.eval_mazes, "tv_mazes", f"must be <= eval_mazes={self.eval_mazes}")

    @property
    def task_options(self) -> dict[str, int]:
        return {
            "size": self.maze_size,
            "extra_openings": self.maze_extra_openings,
            "gen_length": self.sampling.gen_length,
        }


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def arms(cfg: MazeStudyConfig, out: Path) -> dict[str, DTMConfig]:
    """One DTM config per arm, named like ``small-h c=1``."""
    phases = math.ceil(cfg.a_end / cfg.small_h - 1e-9)
    schedules = {"small-h": (cfg.small_h, cfg.total_steps // phases), "one-phase": (cfg.a_end, cfg.total_steps)}
    configs = {}
    for schedule, (h, steps_per_h) in schedules.items():
        for c in cfg.controls:
            name = f"{schedule} c={c}"
            configs[name] = DTMConfig(
                base_model=str(out / "base" / "model"),
                task="maze",
                task_options=cfg.task_options,
                h=h,
                a_end=cfg.a_end,
                steps_per_h=steps_per_h,
                control_variate=1.0 if c == "adaptive" else float(c),
                adaptive_c=c == "adaptive",
                buffer_prompts=cfg.buffer_prompts,
                buffer_completions=cfg.buffer_completions,
                refresh_every=max(steps_per_h // 4, 1),
                refresh_prompts=cfg.buffer_prompts // 4,
                micro_batch=cfg.micro_batch,
                lr=cfg.lr,
                lr_min=cfg.lr / 10,
                sampling=cfg.sampling,
                seed=cfg.seed,
                eval_prompts=0,
                output_dir=str(out / "arms" / name.replace(" ", "_").replace("=", "")),
            )
    return configs


@dataclass
class PathSamples:
    """``k`` sampled responses for each of N mazes: path keys (``INVALID`` for invalid ones), rewards ``[N, k]``,
    and per maze the reward of every key seen."""

    keys: list[list[str]]
    rewards: torch.Tensor
    reward_of: list[dict[str, float]]


def sample_paths(
    model: DiffusionLM, task: MazeTask, prompts: PromptBatch, k: int, sampling: SamplingConfig, seed: int
) -> PathSamples:
    repeated = prompts.select(torch.arange(len(prompts)).repeat_interleave(k))
    responses = rollout(model, repeated, sampling, torch.Generator().manual_seed(seed))
    rewards = task.reward(responses, repeated.meta)
    flat = [
        path_key(row, meta) if r > 0 else INVALID
        for row, r, meta in zip(responses, rewards.tolist(), repeated.meta, strict=True)
    ]
    keys = [flat[i * k : (i + 1) * k] for i in range(len(prompts))]
    rewards = rewards.view(len(prompts), k)
    reward_of = [dict(zip(maze_keys, r.tolist(), strict=True)) for maze_keys, r in zip(keys, rewards, strict=True)]
    return PathSamples(keys, rewards, reward_of)


def path_metrics(samples: PathSamples, prompts: PromptBatch) -> dict[str, float]:
    """Held-out metrics from ``k`` samples per maze, averaged over mazes. ``shortest_found``: distinct shortest paths
    sampled / shortest paths that exist; ``shortest_entropy``: entropy of the sampled shortest paths / log(number
    that exist) (1 = spread evenly over all of them, 0 = one path); ``path_entropy``: entropy (nats) of all
    sampled outcomes."""
    found, shortest_entropy, path_entropy = [], [], []
    for keys, rewards, meta in zip(samples.keys, samples.rewards, prompts.meta, strict=True):
        shortest = [key for key, r in zip(keys, rewards.tolist(), strict=True) if r == 1.0]
        n_shortest = count_shortest_paths(meta)
        found.append(len(set(shortest)) / n_shortest)
        path_entropy.append(entropy(empirical(keys)))
        if shortest:
            shortest_entropy.append(entropy(empirical(shortest)) / math.log(n_shortest))
    rewards = samples.rewards
    return {
        "success": (rewards > 0).float().mean().item(),
        "mean_reward": rewards.mean().item(),
        "frac_shortest": (rewards == 1.0).float().mean().item(),
        "shortest_found": statistics.fmean(found),
        "shortest_entropy": statistics.fmean(shortest_entropy) if shortest_entropy else 0.0,
        "path_entropy": statistics.fmean(path_entropy),
    }


def tv_to_target(samples: PathSamples, base: PathSamples, a: float) -> float:
    """Mean over mazes of TV(samples, rho_a), rho_a ∝ p_base exp(a r), p_base = the base model's sample frequencies."""
    distances = []
    for keys, base_keys, rewards in zip(samples.keys, base.keys, base.reward_of, strict=True):
        distances.append(total_variation(empirical(keys), tilt(empirical(base_keys), rewards, a)))
    return statistics.fmean(distances)


def training_stability(metrics_file: Path) -> dict[str, Any]:
    """Curves and spread of one arm's training log."""
    records = [json.loads(line) for line in metrics_file.read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    grad = [r["grad_norm"] for r in steps]
    return {
        "curve_step": [r["step"] for r in steps],
        "curve_reward": [r["reward_mean"] for r in steps],
        "curve_loss": [r["loss"] for r in steps],
        "grad_norm_var": statistics.pvariance(grad),
        "loss_std": statistics.pstdev(r["loss"] for r in steps),
        "rollouts": steps[-1]["rollouts"],
    }


def evaluate_model(
    model: DiffusionLM, task: MazeTask, cfg: MazeStudyConfig, eval_prompts: PromptBatch, base: PathSamples | None
) -> tuple[dict[str, float], PathSamples]:
    """Held-out path metrics and, against the base samples, TV to the exact tilted target."""
    samples = sample_paths(model, task, eval_prompts, cfg.samples_per_maze, cfg.sampling, cfg.seed + 1)
    metrics = path_metrics(samples, eval_prompts)
    tv_prompts = eval_prompts.select(range(cfg.tv_mazes))
    tv_samples = sample_paths(model, task, tv_prompts, cfg.tv_samples, cfg.sampling, cfg.seed + 2)
    if base is not None:
        metrics["tv_to_target"] = tv_to_target(tv_samples, base, cfg.a_end)
    return metrics, tv_samples


def run_maze_study(cfg: MazeStudyConfig, *, overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Pretrain the base model, run every arm, measure everything; write ``results.json``, ``results.csv``,
    figures and ``report.md`` to ``cfg.output_dir``."""
    out = prepare_run_dir(cfg.output_dir, overwrite=overwrite)
    save_config(cfg, out / "study.yaml")
    task = MazeTask(**cfg.task_options)
    pre = PretrainConfig(
        task="maze",
        task_options=cfg.task_options,
        model=cfg.model,
        steps=cfg.pretrain_steps,
        lr=cfg.pretrain_lr,
        lr_min=cfg.pretrain_lr / 10,
        seed=cfg.seed,
        output_dir=str(out / "base"),
    )
    base_model = pretrain(pre, progress=progress)
    eval_prompts = task.prompts(cfg.eval_mazes, split="test", seed=cfg.seed)

    base_metrics, base_tv = evaluate_model(base_model, task, cfg, eval_prompts, None)
    # Sampling noise floor of the TV estimate: a second base sample against rho_0 = p_base.
    resampled = sample_paths(
        base_model, task, eval_prompts.select(range(cfg.tv_mazes)), cfg.tv_samples, cfg.sampling, cfg.seed + 3
    )
    base_metrics["tv_to_target"] = tv_to_target(resampled, base_tv, 0.0)
    results: dict[str, Any] = {"base": base_metrics}
    curves: dict[str, dict[str, list[float]]] = {}
    for name, arm_cfg in arms(cfg, out).items():
        trainer = DTMTrainer(arm_cfg, model=load_model(out / "base" / "model"), task=task, progress=progress)
        tuned = trainer.train()
        metrics, _ = evaluate_model(tuned, task, cfg, eval_prompts, base_tv)
        stability = training_stability(Path(arm_cfg.output_dir) / "metrics.jsonl")
        curves[name] = {k: stability.pop(k) for k in ("curve_step", "curve_reward", "curve_loss")}
        results[name] = metrics | stability
    write_outputs(out, cfg, results, curves)
    return results


COLUMNS = [
    ("success", "success"),
    ("mean_reward", "mean reward"),
    ("frac_shortest", "shortest"),
    ("shortest_found", "shortest paths found"),
    ("shortest_entropy", "shortest-path entropy (norm.)"),
    ("path_entropy", "path entropy (nats)"),
    ("tv_to_target", "TV to rho_a"),
    ("grad_norm_var", "grad-norm var"),
    ("loss_std", "loss std"),
    ("rollouts", "rollouts"),
]


def markdown_table(results: dict[str, dict[str, float]]) -> str:
    lines = ["| arm | " + " | ".join(title for _, title in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, row in results.items():
        cells = [_fmt(row.get(key)) for key, _ in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3f}"


def write_outputs(out: Path, cfg: MazeStudyConfig, results: dict[str, Any], curves: dict[str, Any]) -> None:
    """results.json / results.csv, three figures and report.md."""
    (out / "results.json").write_text(json.dumps({"results": results, "curves": curves}, indent=2))
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["arm"] + [key for key, _ in COLUMNS])
        for name, row in results.items():
            writer.writerow([name] + [row.get(key, "") for key, _ in COLUMNS])
    plot_figures(out, results, curves)
    best = max((n for n in results if n != "base"), key=lambda n: results[n]["mean_reward"])
    closest = min((n for n in results if n != "base"), key=lambda n: results[n]["tv_to_target"])
    report = [
        "# Maze study",
        "",
        f"Base model pretrained for {cfg.pretrain_steps} steps on random self-avoiding walks; every arm tunes it to "
        f"a = {cfg.a_end} in {cfg.total_steps} optimizer steps (small-h: h = {cfg.small_h}; one-phase: h = "
        f"{cfg.a_end}). Held-out: {cfg.eval_mazes} mazes x {cfg.samples_per_maze} samples at temperature "
        f"{cfg.sampling.temperature}; TV on {cfg.tv_mazes} mazes x {cfg.tv_samples} samples (the base row's TV is "
        "the sampling noise floor: a second base sample against the first).",
        "",
        markdown_table(results),
        "",
        f"Highest mean reward: **{best}**. Closest to the exact tilted target: **{closest}**.",
        "",
        "![reward vs step](reward_vs_step.png)",
        "![diversity vs reward](diversity_vs_reward.png)",
        "![TV to target](tv_to_target.png)",
        "",
    ]
    (out / "report.md").write_text("\n".join(report))


def plot_figures(out: Path, results: dict[str, Any], curves: dict[str, Any]) -> None:
    """Reward vs step per arm, diversity vs reward, and TV to the exact target."""
    fig, ax = new_axes((7, 4))
    for name, curve in curves.items():
        ax.plot(curve["curve_step"], curve["curve_reward"], label=name, linestyle="-" if "small" in name else "--")
    ax.axhline(results["base"]["mean_reward"], color="gray", linewidth=0.8, label="base (held-out)")
    ax.set(xlabel="optimizer step", ylabel="buffer mean reward (teacher rollouts)", title="Reward during training")
    ax.legend(fontsize=7)
    save_figure(fig, out / "reward_vs_step.png")

    fig, ax = new_axes((5.5, 4))
    for name, row in results.items():
        ax.scatter(row["mean_reward"], row["shortest_entropy"], label=name, marker="s" if name == "base" else "o")
    ax.set(xlabel="held-out mean reward", ylabel="normalised entropy over shortest paths", title="Diversity vs reward")
    ax.legend(fontsize=7)
    save_figure(fig, out / "diversity_vs_reward.png")

    fig, ax = new_axes((7, 4))
    names = list(results)
    ax.bar(range(len(names)), [results[n]["tv_to_target"] for n in names], color="tab:blue")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=7)
    ax.set(ylabel="TV to exact tilted target", title="Distance to rho_a (base: sampling noise floor)")
    save_figure(fig, out / "tv_to_target.png")

"""The maze-planning study: how the annealing step h and the control variate c decide reward, stability and mode
collapse (the project's main job; ``dtm study maze``).

For every seed, a base model (the built-in model pretrained with that seed on random self-avoiding walks, see
:mod:`dtm.tasks.maze`) is tuned with DTM to the same final tilt ``a_end`` in several arms: {several small phases, one
large phase} x the control variates in ``controls``, all with the same number of optimizer steps. Every model, the
base included, is then measured on held-out mazes, and on ``tv_mazes`` of them its exact path law is compared with
the exact tilted target rho_a ∝ p_base exp(a r) (:mod:`dtm.studies.maze_laws`; exact laws have no sampling floor).
Results are reported per seed and as mean ± std over seeds.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dtm.config import ConfigError, check, load_config, save_config
from dtm.config.studies.maze import MazeStudyConfig
from dtm.heldout import HeldoutRollouts, heldout_rollouts, rollout_metrics
from dtm.models import load_model
from dtm.models.base import DiffusionLM
from dtm.studies.figures import new_axes, save_figure
from dtm.studies.maze_laws import (
    MazePaths,
    PathLaw,
    distinct_mazes,
    expected_reward,
    maze_paths,
    outcomes,
    path_law,
    tilted,
)
from dtm.studies.maze_laws import total_variation as law_tv
from dtm.studies.metrics import empirical, entropy, mean_std
from dtm.studies.parallel import map_seeds
from dtm.tasks.base import PromptBatch
from dtm.tasks.maze import MazeTask, count_shortest_paths, path_key
from dtm.training.dtm import DTMConfig, DTMTrainer
from dtm.training.logging import read_metrics
from dtm.training.pretrain import PretrainConfig, pretrain
from dtm.training.run_dir import prepare_run_dir

INVALID = "<invalid>"


def arms(cfg: MazeStudyConfig, out: Path, seed: int) -> dict[str, DTMConfig]:
    """One DTM config per arm of a seed, named like ``small-h c=1``; raises ConfigError for bad ``dtm`` keys."""
    phases = math.ceil(cfg.a_end / cfg.small_h - 1e-9)
    schedules = {"small-h": (cfg.small_h, cfg.total_steps // phases), "one-phase": (cfg.a_end, cfg.total_steps)}
    configs = {}
    for schedule, (h, steps_per_h) in schedules.items():
        for c in cfg.controls:
            name = f"{schedule} c={c}"
            values = {
                "base_model": base_folder(cfg, out, seed),
                "task": "maze",
                "task_options": cfg.task_options,
                "buffer_prompts": cfg.buffer_prompts,
                "buffer_completions": cfg.buffer_completions,
                "refresh_every": max(steps_per_h // 4, 1),
                "refresh_prompts": cfg.buffer_prompts // 4,
                "micro_batch": cfg.micro_batch,
                "lr": cfg.lr,
                "lr_min": cfg.lr / 10,
                "sampling": cfg.sampling.__dict__ | cfg.rollout_decoding,
                "eval_prompts": 0,
            } | cfg.dtm
            values |= {
                "h": h,
                "a_end": cfg.a_end,
                "steps_per_h": steps_per_h,
                "control_variate": 1.0 if c == "adaptive" else float(c),
                "adaptive_c": c == "adaptive",
                "seed": seed,
                "output_dir": str(out / "arms" / name.replace(" ", "_").replace("=", "")),
            }
            try:
                configs[name] = load_config(DTMConfig, values)
            except ConfigError as e:
                raise ConfigError(f"dtm (the arms' DTM settings): {e}") from None
    return configs


def base_folder(cfg: MazeStudyConfig, out: Path, seed: int) -> str:
    """The base model of a seed: ``base_model`` if given, else the one the study pretrains into ``out/base``."""
    return cfg.base_model.format(seed=seed) if cfg.base_model else str(out / "base" / "model")


def path_metrics(task: MazeTask, rollouts: HeldoutRollouts) -> dict[str, float]:
    """Path metrics of the sampled held-out responses (``rollouts.samples`` per maze), averaged over mazes.
    ``success``: valid paths; ``shortest_found``: distinct shortest paths sampled / shortest paths that exist;
    ``shortest_entropy``: entropy of the sampled shortest paths / log(number that exist) (1 = spread evenly over all
    of them, 0 = one path); ``path_entropy``: entropy (nats) of all sampled outcomes."""
    k = rollouts.samples
    rewards = task.reward(rollouts.sampled, rollouts.repeated.meta)
    flat = [
        path_key(row, meta) if r > 0 else INVALID
        for row, r, meta in zip(rollouts.sampled, rewards.tolist(), rollouts.repeated.meta, strict=True)
    ]
    found, shortest_entropy, path_entropy = [], [], []
    for i, meta in enumerate(rollouts.prompts.meta):
        keys, maze_rewards = flat[i * k : (i + 1) * k], rewards[i * k : (i + 1) * k].tolist()
        shortest = [key for key, r in zip(keys, maze_rewards, strict=True) if r == 1.0]
        n_shortest = count_shortest_paths(meta)
        found.append(len(set(shortest)) / n_shortest)
        path_entropy.append(entropy(empirical(keys)))
        if shortest:
            shortest_entropy.append(entropy(empirical(shortest)) / math.log(n_shortest))
    return {
        "success": (rewards > 0).float().mean().item(),
        "shortest_found": statistics.fmean(found),
        "shortest_entropy": statistics.fmean(shortest_entropy) if shortest_entropy else 0.0,
        "path_entropy": statistics.fmean(path_entropy),
    }


def training_stability(metrics_file: Path) -> dict[str, Any]:
    """Curves and spread of one arm's training log."""
    steps = [r for r in read_metrics(metrics_file) if "loss" in r]
    grad = [r["grad_norm"] for r in steps]
    return {
        "curve_step": [r["step"] for r in steps],
        "curve_reward": [r["reward_mean"] for r in steps],
        "curve_loss": [r["loss"] for r in steps],
        "grad_norm_var": statistics.pvariance(grad),
        "loss_std": statistics.pstdev(r["loss"] for r in steps),
        "rollouts": steps[-1]["rollouts"],
    }


TIMINGS = ("train_seconds", "rollout_seconds")  # wall times: the only results that differ between identical runs


def cost(trainer: DTMTrainer, seconds: float) -> dict[str, float]:
    """Training wall time (evaluations excluded), the part of it spent decoding rollouts, and the forward passes and
    positions through the model per rollout."""
    state = trainer.state
    return {
        "train_seconds": seconds,
        "rollout_seconds": state.rollout_seconds,
        "rollout_passes": state.rollout_passes / state.rollouts,
        "rollout_positions": state.rollout_positions / state.rollouts,
    }


@dataclass
class EvalSet:
    """The held-out mazes of a seed: sampled-metric prompts and the exact-law mazes with the base model's law."""

    prompts: PromptBatch
    paths: MazePaths
    base_law: PathLaw | None = None


def evaluate_model(
    model: DiffusionLM, task: MazeTask, cfg: MazeStudyConfig, held_out: EvalSet, seed: int
) -> dict[str, float]:
    """The shared held-out metrics (:mod:`dtm.heldout`: greedy, and ``samples_per_maze`` samples per maze) with the
    path metrics of the same samples, and from exact laws: TV to rho_{a_end} ∝ p_base exp(a_end r), the exact
    expected reward and E_rho[r]."""
    rollouts = heldout_rollouts(model, held_out.prompts, cfg.sampling, cfg.samples_per_maze, seed + 1)
    metrics = rollout_metrics(task, rollouts) | path_metrics(task, rollouts)
    paths = held_out.paths
    law = outcomes(path_law(model, paths, cfg.sampling))
    rho = tilted(outcomes(held_out.base_law), paths, cfg.a_end)
    metrics["tv_to_target"] = law_tv(law, rho, paths).mean().item()
    metrics["exact_reward"] = expected_reward(law, paths).mean().item()
    metrics["target_reward"] = expected_reward(rho, paths).mean().item()
    return metrics


def run_seed(seed: int, cfg: MazeStudyConfig, out_dir: str, progress: bool) -> dict[str, Any]:
    """One seed: pretrain its base model (or load ``base_model``), run every arm, measure everything; results are
    written to ``out_dir/seed<seed>/result.json`` too."""
    out = Path(out_dir) / f"seed{seed}"
    out.mkdir(parents=True, exist_ok=True)
    task = MazeTask(**cfg.task_options)
    pre = PretrainConfig(
        task="maze",
        task_options=cfg.task_options,
        architecture=cfg.architecture,
        steps=cfg.pretrain_steps,
        lr=cfg.pretrain_lr,
        lr_min=cfg.pretrain_lr / 10,
        seed=seed,
        output_dir=str(out / "base"),
    )
    base_model = load_model(cfg.base_model.format(seed=seed)) if cfg.base_model else pretrain(pre, progress=progress)
    held_out = EvalSet(
        task.prompts(cfg.eval_mazes, split="test", seed=0), maze_paths(task, distinct_mazes(task, cfg.tv_mazes, "test"))
    )
    held_out.base_law = path_law(base_model, held_out.paths, cfg.sampling)
    results: dict[str, Any] = {"base": evaluate_model(base_model, task, cfg, held_out, seed)}
    curves: dict[str, dict[str, list[float]]] = {}
    for name, arm_cfg in arms(cfg, out, seed).items():
        trainer = DTMTrainer(arm_cfg, model=load_model(arm_cfg.base_model), task=task, progress=progress)
        start = time.perf_counter()
        tuned = trainer.train()
        seconds = time.perf_counter() - start - trainer.state.eval_seconds
        with trainer.uncounted():  # the run's compute is its training only
            metrics = evaluate_model(tuned, task, cfg, held_out, seed)
        stability = training_stability(Path(arm_cfg.output_dir) / "metrics.jsonl")
        curves[name] = {k: stability.pop(k) for k in ("curve_step", "curve_reward", "curve_loss")}
        results[name] = metrics | stability | {"compute_tokens": trainer.state.compute_tokens} | cost(trainer, seconds)
    result = {"seed": seed, "results": results, "curves": curves}
    (out / "result.json").write_text(json.dumps(result, indent=2))
    return result


def run_maze_study(cfg: MazeStudyConfig, *, overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Every seed (base model and arms), then the summary over seeds; write ``results.json``, ``results.csv``,
    figures and ``report.md`` to ``cfg.output_dir``; return the summary."""
    for seed in cfg.seeds:  # every arm's settings and base model are checked before anything is trained
        arms(cfg, Path(cfg.output_dir), seed)
        if cfg.base_model:
            folder = Path(cfg.base_model.format(seed=seed))
            check((folder / "config.json").is_file(), "base_model", f"no model checkpoint at {folder}")
    out = prepare_run_dir(cfg.output_dir, overwrite=overwrite, resumable=False)
    save_config(cfg, out / "study.yaml")
    runs = map_seeds(run_seed, cfg.seeds, cfg, str(out), progress and cfg.workers == 1, workers=cfg.workers)
    summary = summarize(runs)
    write_outputs(out, cfg, runs, summary)
    return summary


COLUMNS = [
    ("greedy_reward", "greedy reward"),
    ("success", "success"),
    ("sampled_reward", "mean reward"),
    ("exact_reward", "exact reward"),
    ("reward_ratio", "reward / E_rho[r]"),
    ("sampled_accuracy", "shortest"),
    ("shortest_found", "shortest paths found"),
    ("shortest_entropy", "shortest-path entropy (norm.)"),
    ("path_entropy", "path entropy (nats)"),
    ("tv_to_target", "TV to rho_a"),
    ("grad_norm_var", "grad-norm var"),
    ("loss_std", "loss std"),
    ("rollouts", "rollouts"),
]


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per arm ("base" included) and metric: mean and std over seeds."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for name in runs[0]["results"]:
        rows = [run["results"][name] | {"reward_ratio": _reward_ratio(run["results"][name])} for run in runs]
        summary[name] = {}
        for key in rows[0]:
            summary[name][key] = mean_std(row[key] for row in rows)
    return summary


def _reward_ratio(row: dict[str, float]) -> float:
    return row["exact_reward"] / row["target_reward"]


def markdown_table(summary: dict[str, dict[str, dict[str, float]]]) -> str:
    """Mean ± std over seeds, one row per arm."""
    lines = ["| arm | " + " | ".join(title for _, title in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, row in summary.items():
        cells = [_fmt(row.get(key)) for key, _ in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(entry: dict[str, float] | None) -> str:
    if entry is None:
        return "-"
    mean, std = entry["mean"], entry["std"]
    if abs(mean) >= 100:
        return f"{mean:.3g} ± {std:.2g}"
    return f"{mean:.3f} ± {std:.3f}"


def write_outputs(out: Path, cfg: MazeStudyConfig, runs: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    """results.json / results.csv, three figures and report.md."""
    (out / "results.json").write_text(json.dumps({"summary": summary, "runs": runs}, indent=2))
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["arm", "seed"] + [key for key, _ in COLUMNS])
        for run in runs:
            for name, row in run["results"].items():
                row = row | {"reward_ratio": _reward_ratio(row)}
                writer.writerow([name, run["seed"]] + [row.get(key, "") for key, _ in COLUMNS])
    plot_figures(out, runs, summary)
    arm_names = [n for n in summary if n != "base"]
    best = max(arm_names, key=lambda n: summary[n]["sampled_reward"]["mean"])
    closest = min(arm_names, key=lambda n: summary[n]["tv_to_target"]["mean"])
    report = [
        "# Maze study",
        "",
        f"Seeds {cfg.seeds}, each with its own base model pretrained for {cfg.pretrain_steps} steps on random "
        f"self-avoiding walks; every arm tunes it to a = {cfg.a_end} in {cfg.total_steps} optimizer steps (small-h: "
        f"h = {cfg.small_h}; one-phase: h = {cfg.a_end}). Held-out: {cfg.eval_mazes} mazes, each decoded greedily and "
        f"sampled {cfg.samples_per_maze} times at temperature {cfg.sampling.temperature}; exact laws on "
        f"{cfg.tv_mazes} distinct held-out mazes (TV to rho_a, exact reward, E_rho[r]; the base row's TV is where "
        "every arm starts). Mean ± std over seeds."
        + (f" Rollouts decode with {cfg.rollout_decoding} instead." if cfg.rollout_decoding else ""),
        "",
        markdown_table(summary),
        "",
        f"Highest mean reward: **{best}**. Closest to the exact tilted target: **{closest}**.",
        "",
        "![reward vs step](reward_vs_step.png)",
        "![diversity vs reward](diversity_vs_reward.png)",
        "![TV to target](tv_to_target.png)",
        "",
    ]
    (out / "report.md").write_text("\n".join(report))


def plot_figures(out: Path, runs: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    """Reward vs step per arm (mean over seeds), diversity vs reward, and TV to the exact target (± std)."""
    fig, ax = new_axes((7, 4))
    for name in runs[0]["curves"]:
        curves = [run["curves"][name] for run in runs]
        steps = curves[0]["curve_step"]
        mean = [statistics.fmean(c["curve_reward"][i] for c in curves) for i in range(len(steps))]
        ax.plot(steps, mean, label=name, linestyle="-" if "small" in name else "--")
    ax.axhline(summary["base"]["sampled_reward"]["mean"], color="gray", linewidth=0.8, label="base (held-out)")
    ax.set(xlabel="optimizer step", ylabel="buffer mean reward (teacher rollouts)", title="Reward during training")
    ax.legend(fontsize=7)
    save_figure(fig, out / "reward_vs_step.png")

    fig, ax = new_axes((5.5, 4))
    for name, row in summary.items():
        ax.errorbar(
            row["sampled_reward"]["mean"],
            row["shortest_entropy"]["mean"],
            xerr=row["sampled_reward"]["std"],
            yerr=row["shortest_entropy"]["std"],
            label=name,
            marker="s" if name == "base" else "o",
            capsize=2,
        )
    ax.set(xlabel="held-out mean reward", ylabel="normalised entropy over shortest paths", title="Diversity vs reward")
    ax.legend(fontsize=7)
    save_figure(fig, out / "diversity_vs_reward.png")

    fig, ax = new_axes((7, 4))
    names = list(summary)
    ax.bar(
        range(len(names)),
        [summary[n]["tv_to_target"]["mean"] for n in names],
        yerr=[summary[n]["tv_to_target"]["std"] for n in names],
        color="tab:blue",
        capsize=3,
    )
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=7)
    ax.set(ylabel="TV to exact tilted target", title="Distance to rho_a (exact laws; base: where the arms start)")
    save_figure(fig, out / "tv_to_target.png")

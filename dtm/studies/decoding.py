"""What fast decoders cost: accuracy and distance to the exact sampler's law (``dtm study decoding``).

For every seed and model (a token task and a model folder per seed), each decoder of ``decoders`` (sampling keys such
as ``threshold``, ``cache``, ``cache_refresh``) is compared with the model's exact sampler (its ``sampling``: one
token per round) on the same held-out prompts:

- greedy decoding (low confidence, temperature 0): reward, accuracy (the task's ``score`` where it has one, e.g.
  Sudoku's cell accuracy) and forward passes per response, and the change of reward and accuracy from the exact
  sampler's on the same prompts (paired per seed, so the seed-to-seed spread of the model itself cancels);
- sampling (random order, temperature 1, the decoding whose law DTM's target is defined on): forward passes per
  response, and on mazes, where every response can be listed, the exact total variation between the decoder's path
  law and the exact sampler's (:mod:`dtm.diffusion.exact`; no sampling noise), averaged over ``tv_mazes`` mazes.

Results are per seed and mean ± std over seeds.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from dtm.config import check, save_config
from dtm.config.sampling import SamplingConfig
from dtm.config.studies.decoding import DecodingStudyConfig
from dtm.diffusion.sampler import DecodeStats
from dtm.models import load_model
from dtm.models.base import DiffusionLM
from dtm.rollouts import rollout
from dtm.studies.maze_laws import distinct_mazes, maze_paths, outcomes, path_law, total_variation
from dtm.studies.metrics import mean_std
from dtm.studies.parallel import map_seeds
from dtm.tasks import get_task
from dtm.tasks.base import PromptBatch, TokenTask
from dtm.tasks.maze import MazeTask
from dtm.training.run_dir import prepare_run_dir


def measure(
    model: DiffusionLM, task: TokenTask, prompts: PromptBatch, sampling: SamplingConfig, seed: int
) -> dict[str, float]:
    """Greedy (low confidence) reward, accuracy and passes, and sampled (random order) passes, on ``prompts``."""
    greedy_sampling = replace(sampling, remasking="low_confidence", temperature=0.0)
    stats = DecodeStats.zeros(len(prompts))
    greedy = rollout(model, prompts, greedy_sampling, stats=stats)
    sampled_stats = DecodeStats.zeros(len(prompts))
    rollout(model, prompts, sampling, torch.Generator().manual_seed(seed), stats=sampled_stats)
    score = task.score(greedy, prompts.meta) if hasattr(task, "score") else task.is_correct(greedy, prompts.meta)
    return {
        "greedy_reward": task.reward(greedy, prompts.meta).mean().item(),
        "greedy_accuracy": score.double().mean().item(),
        "greedy_passes": stats.passes.double().mean().item(),
        "sampled_passes": sampled_stats.passes.double().mean().item(),
    }


def run_seed(seed: int, cfg: DecodingStudyConfig) -> dict[str, Any]:
    """Every model and decoder of one seed: ``{model: {decoder or "exact": metrics}}``."""
    results: dict[str, Any] = {}
    for name, entry in cfg.models.items():
        path = Path(entry["path"].format(seed=seed))
        model = load_model(path).eval()
        reference = cfg.reference(name)
        task = get_task(entry["task"], **entry.get("task_options", {}))
        prompts = task.prompts(cfg.eval_prompts, split="test", seed=0)
        rows = {"exact": measure(model, task, prompts, reference, seed)}
        paths = None
        if isinstance(task, MazeTask):
            paths = maze_paths(task, distinct_mazes(task, cfg.tv_mazes, "test"))
            exact_law = outcomes(path_law(model, paths, reference))
            rows["exact"]["tv_to_exact"] = 0.0
        for decoder in cfg.decoders:
            sampling = cfg.decoder(name, decoder)
            rows[decoder] = measure(model, task, prompts, sampling, seed)
            if paths is not None:
                law = outcomes(path_law(model, paths, sampling))
                rows[decoder]["tv_to_exact"] = total_variation(law, exact_law, paths).mean().item()
        for row in rows.values():  # paired with the exact sampler on the same prompts and seed
            row["accuracy_change"] = row["greedy_accuracy"] - rows["exact"]["greedy_accuracy"]
            row["reward_change"] = row["greedy_reward"] - rows["exact"]["greedy_reward"]
        results[name] = rows
    return {"seed": seed, "results": results}


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """Mean and std over seeds of every metric of every (model, decoder)."""
    summary: dict[str, Any] = {}
    for model, decoders in runs[0]["results"].items():
        summary[model] = {}
        for decoder, metrics in decoders.items():
            summary[model][decoder] = {}
            for key in metrics:
                summary[model][decoder][key] = mean_std(run["results"][model][decoder][key] for run in runs)
    return summary


COLUMNS = [
    ("greedy_accuracy", "greedy accuracy"),
    ("accuracy_change", "change vs exact"),
    ("greedy_reward", "greedy reward"),
    ("reward_change", "change vs exact"),
    ("greedy_passes", "passes / response (greedy)"),
    ("sampled_passes", "passes / response (sampled)"),
    ("tv_to_exact", "TV to the exact law"),
]


def markdown_table(summary: dict[str, Any], model: str) -> str:
    """One model: a row per decoder (the exact sampler first), mean ± std over seeds."""
    columns = [(k, t) for k, t in COLUMNS if k in summary[model]["exact"]]
    lines = ["| decoder | " + " | ".join(t for _, t in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for decoder, row in summary[model].items():
        cells = [f"{row[k]['mean']:.3f} ± {row[k]['std']:.3f}" for k, _ in columns]
        lines.append(f"| {decoder} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_decoding_study(cfg: DecodingStudyConfig, *, overwrite: bool = False) -> dict[str, Any]:
    """Every seed, then the summary; write ``results.json`` and ``report.md`` to ``cfg.output_dir``."""
    for name, entry in cfg.models.items():
        for seed in cfg.seeds:
            folder = Path(entry["path"].format(seed=seed))
            check((folder / "config.json").is_file(), f"models.{name}.path", f"no model checkpoint at {folder}")
    out = prepare_run_dir(cfg.output_dir, overwrite=overwrite, resumable=False)
    save_config(cfg, out / "study.yaml")
    runs = map_seeds(run_seed, cfg.seeds, cfg, workers=cfg.workers)
    summary = summarize(runs)
    (out / "results.json").write_text(json.dumps({"summary": summary, "runs": runs}, indent=2))
    report = [
        "# Decoding study",
        "",
        f"Seeds {cfg.seeds}; {cfg.eval_prompts} held-out prompts per model, decoded greedily (low confidence) and "
        f"sampled once (random order, temperature 1) by every decoder; exact laws on {cfg.tv_mazes} held-out mazes. "
        "The exact row is each model's sampler with one token per round. Mean ± std over seeds.",
    ]
    for model in summary:
        report += ["", f"## {model}", "", markdown_table(summary, model)]
    (out / "report.md").write_text("\n".join(report) + "\n")
    return summary


BUFFER_COLUMNS = [
    ("exact_reward", "exact reward"),
    ("reward_change", "change vs exact rollouts"),
    ("tv_to_target", "TV to rho_a"),
    ("tv_change", "change vs exact rollouts"),
    ("sampled_reward", "sampled reward"),
    ("greedy_reward", "greedy reward"),
    ("rollout_passes", "passes / rollout"),
    ("rollout_seconds", "rollout s"),
    ("train_seconds", "training s"),
]
# The buffer studies of scripts/decoding.sh: folder under runs/decoding-buffer -> the decoder that filled the buffer.
BUFFER_STUDIES = {
    "exact": "exact (one token per round)",
    "threshold": "threshold 0.9",
    "dual": "dual cache",
    "threshold-dual": "threshold 0.9 + dual",
}


def buffer_summary(studies: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Maze studies on the same base models whose arms' replay buffers different decoders filled (the first is the
    exact sampler): per decoder, arm and metric, mean and std over seeds, with the changes of exact reward and TV to
    rho_a from the exact-rollout run of the same seed and arm (paired)."""
    reference = next(iter(studies.values()))
    summary: dict[str, Any] = {}
    for decoder, runs in studies.items():
        summary[decoder] = {}
        for arm in runs[0]["results"]:
            if arm == "base":
                continue
            rows = []
            for run, ref in zip(runs, reference, strict=True):
                row, base = run["results"][arm], ref["results"][arm]
                rows.append(
                    row
                    | {
                        "reward_change": row["exact_reward"] - base["exact_reward"],
                        "tv_change": row["tv_to_target"] - base["tv_to_target"],
                    }
                )
            summary[decoder][arm] = {key: mean_std(r[key] for r in rows) for key, _ in BUFFER_COLUMNS}
    return summary


def buffer_table(summary: dict[str, Any], arm: str) -> str:
    """One arm of :func:`buffer_summary`: a row per decoder, mean ± std over seeds (seconds rounded)."""
    head = "| rollouts decoded by | " + " | ".join(title for _, title in BUFFER_COLUMNS) + " |"
    lines = [head, "|---" * (len(BUFFER_COLUMNS) + 1) + "|"]
    for decoder, arms in summary.items():
        row = arms[arm]
        cells = []
        for key, _ in BUFFER_COLUMNS:
            mean, std = row[key]["mean"], row[key]["std"]
            cells.append(f"{mean:.0f} ± {std:.0f}" if key.endswith("seconds") else f"{mean:.3f} ± {std:.3f}")
        lines.append(f"| {decoder} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_buffer_report(root: Path) -> dict[str, Any]:
    """Collect the buffer studies under ``root`` (:data:`BUFFER_STUDIES`) into ``root/results.json`` (their runs and
    :func:`buffer_summary`) and ``root/report.md``."""
    studies = {}
    for folder, decoder in BUFFER_STUDIES.items():
        path = root / folder / "results.json"
        check(path.is_file(), "buffer study", f"no results at {path} (run scripts/decoding.sh)")
        studies[decoder] = json.loads(path.read_text())["runs"]
    summary = buffer_summary(studies)
    (root / "results.json").write_text(json.dumps({"runs": studies, "summary": summary}, indent=2))
    arms = list(next(iter(summary.values())))
    report = ["# DTM with the replay buffer filled by each decoder", ""]
    for arm in arms:
        report += [f"## {arm}", "", buffer_table(summary, arm), ""]
    (root / "report.md").write_text("\n".join(report))
    return summary


if __name__ == "__main__":
    import sys

    write_buffer_report(Path(sys.argv[1]))

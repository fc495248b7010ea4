"""DTM against the RL baselines on one task, side by side (``dtm study compare``).

Every method starts, per seed, from the same base model (given, or pretrained here with that seed), draws its
rollouts with the same sampler settings, and is compared at two budgets:

- ``rollouts``: the same number of reward evaluations. DTM's config fixes its budget (a full buffer per phase plus
  refreshes) and each baseline's ``steps`` is derived from it;
- ``compute``: the same training compute, counted machine-independently as forward-token equivalents (tokens through
  every forward pass, rollouts included, plus twice the tokens of every backward pass). DTM reuses each rollout many
  times, which on-policy RL cannot; at this budget each baseline gets the steps (fresh rollouts and updates) that
  spend DTM's compute, calibrated on its own equal-rollout run of the same seed.

Every trained model, and the base, is measured on the same held-out prompts: greedy reward and accuracy, and from
``eval_samples`` samples per prompt at the rollout temperature, the sampled reward and the diversity (distinct
responses and distinct correct responses per prompt). Held-out greedy reward is also logged ``curve_points`` times
during each run, for the reward-vs-rollouts figure. Wall time is the training time, evaluations excluded.
"""

from __future__ import annotations

import csv
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from dtm.config import ConfigError, check, load_config, save_config
from dtm.config.studies.compare import BUDGETS, CompareConfig
from dtm.heldout import heldout_metrics
from dtm.studies.figures import new_axes, save_figure
from dtm.studies.parallel import map_seeds
from dtm.tasks.base import PromptBatch, TokenTask
from dtm.training import load_train_config, make_trainer
from dtm.training.logging import read_metrics
from dtm.training.pretrain import PretrainConfig, pretrain
from dtm.training.run_dir import prepare_run_dir
from dtm.training.trainer import RunConfig, load_model_and_task


def base_models(cfg: CompareConfig, out: Path) -> dict[int, Path]:
    """The base model folder of every seed (given, or where the comparison pretrains it)."""
    if cfg.base_model:
        return {seed: Path(cfg.base_model.replace("{seed}", str(seed))) for seed in cfg.seeds}
    return {seed: out / "bases" / f"seed{seed}" / "model" for seed in cfg.seeds}


def run_configs(cfg: CompareConfig, bases: dict[int, Path], out: Path) -> dict[tuple[str, int], RunConfig]:
    """The training config of every (method, seed) run at the rollout budget, each spending the same rollouts."""

    def load(method: str, seed: int, **extra: Any) -> RunConfig:
        values = {**cfg.shared, **cfg.method_options.get(method, {}), **extra}
        values.update(
            method=method,
            task=cfg.task,
            task_options=cfg.task_options,
            base_model=str(bases[seed]),
            seed=seed,
            output_dir=str(out / "runs" / method / f"seed{seed}"),
            eval_prompts=cfg.curve_prompts,
        )
        try:
            return load_train_config(values)
        except ConfigError as e:
            raise ConfigError(f"training config of {method} (shared + method_options.{method}): {e}") from None

    budget = cfg.rollouts
    if "dtm" in cfg.methods:
        planned = load("dtm", cfg.seeds[0]).planned_rollouts
        check(
            budget in (0, planned),
            "rollouts",
            f"is {budget} but DTM's config plans {planned} rollouts (buffer, refreshes and phases); set rollouts: 0 "
            "to use DTM's plan, or change DTM's method_options",
        )
        budget = planned
    configs = {}
    for method in cfg.methods:
        for seed in cfg.seeds:
            run = load(method, seed) if method == "dtm" else _with_budget(load(method, seed, rollout_batches=1), budget)
            total = run.total_steps if method == "dtm" else run.rollout_batches
            configs[method, seed] = replace(run, eval_every=max(total // cfg.curve_points, 1))
    return configs


def compute_configs(
    cfg: CompareConfig, configs: dict[tuple[str, int], RunConfig], rows: list[dict[str, Any]], out: Path
) -> dict[tuple[str, int], RunConfig]:
    """The baselines' configs at DTM's compute: per seed, ``rollout_batches`` = DTM's compute tokens / the baseline's
    compute per step in its equal-rollout run (constant per step for fixed-length prompts), rounded."""
    done = {(row["method"], row["seed"]): row for row in rows if row["budget"] == "rollouts"}
    out_configs = {}
    for (method, seed), run in configs.items():
        if method == "dtm":
            continue
        per_step = done[method, seed]["compute_tokens"] / run.rollout_batches
        steps = max(1, round(done["dtm", seed]["compute_tokens"] / per_step))
        output_dir = str(out / "runs-compute" / method / f"seed{seed}")
        out_configs[method, seed] = replace(
            run, rollout_batches=steps, output_dir=output_dir, eval_every=max(steps // cfg.curve_points, 1)
        )
    return out_configs


def _with_budget(run: RunConfig, budget: int) -> RunConfig:
    """A baseline config whose ``rollout_batches`` spend exactly ``budget`` rollouts."""
    per_step = run.planned_rollouts
    check(
        budget % per_step == 0,
        "rollouts",
        f"{run.method} draws {per_step} rollouts per step (micro_batch x grad_accum), which must divide the budget "
        f"of {budget}; change its micro_batch / grad_accum or the budget",
    )
    return replace(run, rollout_batches=budget // per_step)


def eval_curve(metrics_file: Path) -> list[tuple[int, float]]:
    """(rollouts, held-out greedy reward) of every evaluation a run logged."""
    return [(r["rollouts"], r["eval_reward_greedy"]) for r in read_metrics(metrics_file) if "eval" in r]


def run_compare(cfg: CompareConfig, *, overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Run every method for every seed at every budget; write ``results.json``, ``runs.csv``, ``summary.csv``,
    ``report.md`` and ``reward_vs_rollouts.png`` to ``cfg.output_dir``; return the summary (per budget and method,
    mean and std over seeds). Seeds run side by side in ``workers`` processes."""
    out = Path(cfg.output_dir)
    bases = base_models(cfg, out)
    configs = run_configs(cfg, bases, out)  # every method's settings are checked before anything is trained
    if cfg.base_model:
        for seed, path in bases.items():
            check((path / "config.json").is_file(), "base_model", f"no model checkpoint at {path} (seed {seed})")
    else:
        for seed in cfg.seeds:
            _pretrain_config(cfg, seed, bases[seed].parent)
    out = prepare_run_dir(cfg.output_dir, overwrite=overwrite, resumable=False)
    save_config(cfg, out / "compare.yaml")
    per_seed = map_seeds(run_seed, cfg.seeds, cfg, out, progress and cfg.workers == 1, workers=cfg.workers)
    rows = [row for seed_rows, _ in per_seed for row in seed_rows]
    curves: dict[str, dict[str, list[list[tuple[int, float]]]]] = {}
    for _, seed_curves in per_seed:
        for (budget, method), curve in seed_curves.items():
            curves.setdefault(budget, {}).setdefault(method, []).append(curve)
    summary = summarize(rows)
    write_outputs(out, cfg, next(iter(configs.values())), rows, summary, curves)
    return summary


def run_seed(
    seed: int, cfg: CompareConfig, out: Path, progress: bool
) -> tuple[list[dict[str, Any]], dict[tuple[str, str], list[tuple[int, float]]]]:
    """One seed: its base model (pretrained here unless given) and its evaluation, every method at the rollout
    budget, then the baselines at DTM's compute. Returns the table rows and the held-out curves per (budget,
    method)."""
    bases = base_models(cfg, out)
    configs = {key: run for key, run in run_configs(cfg, bases, out).items() if key[1] == seed}
    if not cfg.base_model:
        pretrain(_pretrain_config(cfg, seed, bases[seed].parent), progress=progress)
    first = next(iter(configs.values()))
    base, task = load_model_and_task(first)
    prompts = task.prompts(cfg.eval_prompts, split="test", seed=0)
    rows: list[dict[str, Any]] = [
        {"budget": "base", "method": "base", "seed": seed, "rollouts": 0, "steps": 0, "wall_time": 0.0}
        | _compute(None)
        | heldout_metrics(base, task, prompts, first.sampling, cfg.eval_samples, seed=0)
    ]
    curves: dict[tuple[str, str], list[tuple[int, float]]] = {}

    def run_all(budget: str, budget_configs: dict[tuple[str, int], RunConfig]) -> None:
        for (method, _), run in budget_configs.items():
            rows.append(_train_and_evaluate(run, task, prompts, cfg, budget, progress))
            curves[budget, method] = eval_curve(Path(run.output_dir) / "metrics.jsonl")

    run_all("rollouts", configs)
    if "compute" in cfg.budgets:
        # DTM's own run is the compute budget's reference point; the baselines are rerun to spend it.
        rows.extend([row | {"budget": "compute"} for row in rows if row["method"] == "dtm"])
        curves["compute", "dtm"] = curves["rollouts", "dtm"]
        run_all("compute", compute_configs(cfg, configs, rows, out))
    return rows, curves


def _train_and_evaluate(
    run: RunConfig, task: TokenTask, prompts: PromptBatch, cfg: CompareConfig, budget: str, progress: bool
) -> dict[str, Any]:
    """One run: train, evaluate on the held-out prompts; its table row."""
    trainer = make_trainer(run, model=load_model_and_task(run, task=task)[0], task=task, progress=progress)
    start = time.perf_counter()
    model = trainer.train()
    wall = time.perf_counter() - start - trainer.state.eval_seconds
    with trainer.uncounted():  # the run's compute is its training only
        metrics = heldout_metrics(model, task, prompts, run.sampling, cfg.eval_samples, seed=0)
    steps = run.total_steps if run.method == "dtm" else run.rollout_batches
    row = {"budget": budget, "method": run.method, "seed": run.seed, "rollouts": trainer.state.rollouts}
    row |= {"steps": steps, "wall_time": wall} | _compute(trainer.state) | metrics
    if progress:
        tqdm.write(
            f"{budget} budget, {run.method} seed {run.seed}: greedy reward {metrics['greedy_reward']:.3f}, sampled "
            f"reward {metrics['sampled_reward']:.3f}, {trainer.state.rollouts} rollouts, "
            f"{row['compute_tokens'] / 1e6:.1f}M compute tokens, {wall:.0f} s"
        )
    return row


def _compute(state: Any) -> dict[str, int]:
    """A run's compute counters (all 0 for the base model)."""
    if state is None:
        return {"forward_tokens": 0, "backward_tokens": 0, "compute_tokens": 0}
    return {
        "forward_tokens": state.forward_tokens,
        "backward_tokens": state.backward_tokens,
        "compute_tokens": state.compute_tokens,
    }


def _pretrain_config(cfg: CompareConfig, seed: int, output_dir: Path) -> PretrainConfig:
    """A seed's base-model pretraining (task from the comparison unless ``pretrain`` sets it)."""
    values = {"task": cfg.task, "task_options": cfg.task_options} | cfg.pretrain
    values.update(seed=seed, output_dir=str(output_dir))
    try:
        return load_config(PretrainConfig, values)
    except ConfigError as e:
        raise ConfigError(f"pretrain.{e}") from None


METRICS = (
    ("greedy_reward", "greedy reward"),
    ("greedy_accuracy", "greedy accuracy"),
    ("sampled_reward", "sampled reward"),
    ("sampled_accuracy", "sampled accuracy"),
    ("distinct", "distinct / samples"),
    ("distinct_correct", "distinct correct"),
    ("rollouts", "rollouts"),
    ("compute_tokens", "compute (M tokens)"),
    ("wall_time", "wall time (s)"),
)


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per budget ("base" for the base models) and method: the mean and standard deviation over seeds of every
    metric, and the number of seeds."""
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for budget, method in dict.fromkeys((row["budget"], row["method"]) for row in rows):
        runs = [row for row in rows if row["method"] == method and row["budget"] == budget]
        entry: dict[str, Any] = {"seeds": len(runs)}
        for key, _ in METRICS:
            values = [float(row[key]) for row in runs]
            entry[key] = statistics.fmean(values)
            entry[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        summary.setdefault(budget, {})[method] = entry
    return summary


def markdown_table(summary: dict[str, dict[str, dict[str, Any]]], budget: str) -> str:
    """Mean ± std over seeds at one budget, the base models first."""
    lines = [
        "| method | seeds | " + " | ".join(title for _, title in METRICS) + " |",
        "|---|---" + "|---" * len(METRICS) + "|",
    ]
    for method, entry in (summary.get("base", {}) | summary[budget]).items():
        cells = [_mean_std(entry[key], entry[f"{key}_std"], key) for key, _ in METRICS]
        lines.append(f"| {method} | {entry['seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_tables(summary: dict[str, dict[str, dict[str, Any]]]) -> str:
    titles = {"rollouts": "Equal rollouts", "compute": "Equal compute (DTM's forward-token equivalents)"}
    parts = []
    for budget in (b for b in BUDGETS if b in summary):
        parts += [f"**{titles[budget]}**", "", markdown_table(summary, budget), ""]
    return "\n".join(parts).rstrip()


HEADLINE = (
    ("rollouts", "greedy_reward", "greedy reward, equal rollouts"),
    ("compute", "greedy_reward", "greedy reward, equal compute"),
    ("rollouts", "sampled_reward", "sampled reward, equal rollouts"),
    ("rollouts", "distinct_correct", "distinct correct, equal rollouts"),
    ("compute", "distinct_correct", "distinct correct, equal compute"),
)


def headline_table(summary: dict[str, dict[str, dict[str, Any]]]) -> str:
    """One row per method with its held-out rewards and distinct correct responses at both budgets (mean ± std over
    seeds); the base model's row repeats its one value under each budget."""
    columns = [(budget, key, title) for budget, key, title in HEADLINE if budget in summary]
    lines = ["| method | " + " | ".join(title for *_, title in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    methods = list(summary.get("base", {})) + list(summary["rollouts"])
    for method in methods:
        cells = []
        for budget, key, _ in columns:
            entry = summary["base"][method] if method == "base" else summary[budget][method]
            cells.append(_mean_std(entry[key], entry[f"{key}_std"], key))
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


PAIRED = (
    ("greedy_reward", "greedy reward"),
    ("distinct_correct", "distinct correct"),
    ("sampled_reward", "sampled reward"),
)


def paired_differences(
    records: dict[str, list[dict[str, Any]]], method: str, other: str, budget: str = "rollouts"
) -> dict[str, dict[str, Any]]:
    """``method`` minus ``other`` per base model, pooled over comparison records (name -> rows of its results.json).

    A base model is one seed of one record; records whose bases were pretrained apart (other seeds, another machine)
    are independent draws, so the differences d_b = m_b - o_b of all bases are pooled: per metric of :data:`PAIRED`,
    their mean, sample std, number of bases and the number with d_b > 0. Pairing by base removes the part of the
    spread that the two methods share (a weak base lowers both)."""
    pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for name, rows in records.items():
        by_seed: dict[str, dict[int, dict[str, Any]]] = {method: {}, other: {}}
        for row in rows:
            if row["budget"] == budget and row["method"] in by_seed:
                by_seed[row["method"]][row["seed"]] = row
        if not by_seed[method] or set(by_seed[method]) != set(by_seed[other]):
            raise ValueError(f"{name}: {method} and {other} must share their seeds at budget {budget!r}")
        pairs += [(by_seed[method][seed], by_seed[other][seed]) for seed in sorted(by_seed[method])]
    summary: dict[str, dict[str, Any]] = {}
    for key, _ in PAIRED:
        diffs = [float(mine[key]) - float(theirs[key]) for mine, theirs in pairs]
        summary[key] = {
            "mean": statistics.fmean(diffs),
            "std": statistics.stdev(diffs) if len(diffs) > 1 else 0.0,
            "bases": len(diffs),
            "ahead": sum(d > 0 for d in diffs),
        }
    return summary


def paired_table(summary: dict[str, dict[str, Any]], method: str, other: str) -> str:
    """The pooled differences of :func:`paired_differences` as a markdown table."""
    header = f"| metric | bases | {method} - {other} (mean ± std) | bases where {method} is ahead |"
    lines = [header, "|---|---|---|---|"]
    for key, title in PAIRED:
        entry = summary[key]
        lines.append(f"| {title} | {entry['bases']} | {entry['mean']:.3f} ± {entry['std']:.3f} | {entry['ahead']} |")
    return "\n".join(lines)


def _mean_std(mean: float, std: float, key: str) -> str:
    if key == "compute_tokens":
        return f"{mean / 1e6:.1f} ± {std / 1e6:.1f}"
    if key in ("wall_time", "rollouts"):
        return f"{mean:.0f} ± {std:.0f}"
    return f"{mean:.3f} ± {std:.3f}"


def write_outputs(
    out: Path,
    cfg: CompareConfig,
    run: RunConfig,
    rows: list[dict[str, Any]],
    summary: dict[str, dict[str, dict[str, Any]]],
    curves: dict[str, dict[str, list[list[tuple[int, float]]]]],
) -> None:
    (out / "results.json").write_text(json.dumps({"runs": rows, "summary": summary, "curves": curves}, indent=2))
    flat = [{"budget": b, "method": m} | e for b, methods in summary.items() for m, e in methods.items()]
    for name, table in (("runs.csv", rows), ("summary.csv", flat)):
        with open(out / name, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(table[-1]))
            writer.writeheader()
            writer.writerows(table)
    budget = summary["rollouts"][next(iter(summary["rollouts"]))]["rollouts"]
    intro = (
        f"Base model of each seed {cfg.seeds}; equal rollouts: about {budget:.0f} per run; equal compute: every "
        "baseline spends the forward-token equivalents (forward tokens + 2 x backward tokens, rollouts included) of "
        f"DTM's run of the same seed. Held-out: {cfg.eval_prompts} prompts, greedy and {cfg.eval_samples} samples "
        f"each at temperature {run.sampling.temperature}; mean ± std over seeds. Wall time: training only, on this "
        "machine."
    )
    write_report(out, f"{cfg.task}: {', '.join(cfg.methods)}", intro, summary, curves, cfg.task)


def write_report(
    out: Path,
    title: str,
    intro: str,
    summary: dict[str, dict[str, dict[str, Any]]],
    curves: dict[str, dict[str, list[list[tuple[int, float]]]]],
    task: str,
) -> None:
    """``report.md`` (the headline table and the full tables at every budget) and its figure."""
    base_reward = summary["base"]["base"]["greedy_reward"]
    plot_reward_vs_rollouts(out / "reward_vs_rollouts.png", curves, base_reward, task)
    report = [f"# {title}", "", intro, "", headline_table(summary), "", markdown_tables(summary), ""]
    report += ["![held-out greedy reward vs rollouts](reward_vs_rollouts.png)", ""]
    (out / "report.md").write_text("\n".join(report))


def plot_reward_vs_rollouts(
    path: Path, curves: dict[str, dict[str, list[list[tuple[int, float]]]]], base_reward: float, task: str
) -> None:
    """Held-out greedy reward against rollouts spent, one panel per budget: mean over seeds, shaded ± one std."""
    budgets = [b for b in BUDGETS if b in curves]
    fig, axes = new_axes((6.5 * len(budgets), 4), ncols=len(budgets))
    for ax, budget in zip([axes] if len(budgets) == 1 else axes, budgets, strict=True):
        for method, runs in curves[budget].items():
            points = min(len(curve) for curve in runs)
            x = [statistics.fmean(curve[i][0] for curve in runs) for i in range(points)]
            values = [[curve[i][1] for curve in runs] for i in range(points)]
            mean = [statistics.fmean(v) for v in values]
            std = [statistics.pstdev(v) for v in values]
            ax.plot(x, mean, marker="o", markersize=3, label=method)
            low = [m - s for m, s in zip(mean, std, strict=True)]
            high = [m + s for m, s in zip(mean, std, strict=True)]
            ax.fill_between(x, low, high, alpha=0.2)
        ax.axhline(base_reward, color="gray", linewidth=0.8, linestyle="--", label="base")
        ax.set(
            xlabel="rollouts (reward evaluations)",
            ylabel="held-out greedy reward",
            title=f"{task}: equal {budget}",
        )
        ax.legend(fontsize=8)
    save_figure(fig, path)

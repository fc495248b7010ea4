"""Does each DTM phase reach its own target? The exact fit diagnostic on enumerable mazes (``dtm study fit``).

A phase a -> a + h distils the teacher pi_a into a student whose exact target is the teacher's law tilted by h,
q = p_a exp(h r) / Z (:mod:`dtm.studies.maze_laws`). On mazes small enough to list every valid path, the laws of
teacher and student under the decoding the trainer's SAR states describe (random order, one token per round) are
exact, so this study runs DTM and measures, at every phase end (and every ``measure_every`` steps inside a phase), on
training and held-out mazes:

- ``tv_target``: TV(student, q), next to ``tv_start`` = TV(teacher, q) (where the phase started);
- ``h_eff``: the tilt of the teacher whose exact law is closest to the student (h_eff = h is a perfect phase);
- ``loss_gain`` against ``loss_gain_max``: how much of the expected DTM loss improvement that any student could get
  this one got (``gain_fraction``);
- ``tv_rho``: TV(student, rho_{a+h}) with rho_a = p_base exp(a r) / Z the run's overall target, and the expected
  reward of the student beside ``rho_reward`` = E_rho[r];
- ``valid`` beside ``target_valid``: the probability of a valid path under the student and under the phase target;

against optimizer steps, masked states seen and rollouts. Every seed pretrains its own base model (unless
``base_model`` is given). All laws are exact (no sampling floor), except the invalid part of the loss gain
(``invalid_samples`` teacher draws per maze).
"""

from __future__ import annotations

import csv
import json
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from dtm.config import ConfigError, save_config
from dtm.config.studies.fit import FitStudyConfig
from dtm.diffusion.exact import SequenceLaw
from dtm.models import load_model
from dtm.models.base import DiffusionLM
from dtm.rollouts import rollout
from dtm.studies.figures import new_axes, save_figure
from dtm.studies.maze_laws import (
    PathLaw,
    Responses,
    distinct_mazes,
    effective_tilt,
    expected_reward,
    loss_gain,
    maze_paths,
    outcomes,
    path_law,
    sequence_law,
    tilted,
    total_variation,
)
from dtm.studies.metrics import mean_std
from dtm.studies.parallel import map_seeds
from dtm.tasks.maze import MazeTask
from dtm.training.dtm import DTMConfig, DTMTrainer
from dtm.training.pretrain import pretrain
from dtm.training.run_dir import prepare_run_dir

SPLITS = ("train", "heldout")


@dataclass
class TeacherLaws:
    """What a phase's measurements need of its teacher on one maze set: its exact law, invalid responses drawn from
    it (for the loss gain) and their law."""

    law: PathLaw
    invalid: Responses
    invalid_law: SequenceLaw


class FitMonitor:
    """The study's callback for :meth:`DTMTrainer.train`: the teacher's laws at every phase start and the student's
    at every measurement point, with the metrics of the module docstring appended to ``records``.

    ``base`` holds the base model's laws (rho_a's reference); ``first_teacher`` the first phase's teacher laws, which
    every variant on the same base shares (its teacher is the base model)."""

    def __init__(
        self,
        task: MazeTask,
        cfg: DTMConfig,
        study: FitStudyConfig,
        base: dict[str, PathLaw],
        first_teacher: dict[str, TeacherLaws],
        variant: str,
    ) -> None:
        self.task = task
        self.cfg = cfg
        self.study = study
        self.base = base
        self.teacher = first_teacher
        self.first_teacher = first_teacher
        self.variant = variant
        self.records: list[dict[str, Any]] = []
        self.phase = {"a": 0.0, "h": cfg.h}
        self.seconds = 0.0

    def __call__(self, event: str, trainer: DTMTrainer, record: dict[str, Any]) -> None:
        start = time.perf_counter()
        if event == "phase_start":
            self.phase = {"a": record["a"], "h": record["h"]}
            if record["phase"] > 0:
                self.teacher = teacher_laws(trainer.rollout_model, self.task, self.base, self.cfg, self.study)
            self._measure(None, trainer, record["step"], in_phase=0)
        else:
            in_phase = record["step"] - record["phase"] * self.cfg.steps_per_h
            every = self.study.measure_every
            if in_phase == self.cfg.steps_per_h or (every and in_phase % every == 0):
                self._measure(trainer.raw_student, trainer, record["step"], in_phase)
        self.seconds += time.perf_counter() - start

    def _measure(self, student: DiffusionLM | None, trainer: DTMTrainer, step: int, in_phase: int) -> None:
        """Metrics of ``student`` (None: the teacher itself, at a phase start) on every maze set."""
        a, h = self.phase["a"], self.phase["h"]
        cfg = self.cfg
        row: dict[str, Any] = {
            "variant": self.variant,
            "seed": cfg.seed,
            "phase": round(a / cfg.h),
            "a": a,
            "h": h,
            "step": step,
            "in_phase": in_phase,
            "states": step * cfg.micro_batch * cfg.grad_accum,
            "rollouts": trainer.state.rollouts,
        }
        for name, teacher in self.teacher.items():
            paths = teacher.law.paths
            sampling = cfg.sampling
            law = teacher.law if student is None else path_law(student, paths, sampling)
            invalid_law = teacher.invalid_law if student is None else sequence_law(student, teacher.invalid, sampling)
            p_s, p_a = outcomes(law), outcomes(teacher.law)
            target = tilted(p_a, paths, h)
            rho = tilted(outcomes(self.base[name]), paths, a + h)
            gain, gain_max = loss_gain(teacher.law, law, h, teacher.invalid, teacher.invalid_law, invalid_law)
            row |= {
                f"{name}_tv_target": total_variation(p_s, target, paths).mean().item(),
                f"{name}_tv_start": total_variation(p_a, target, paths).mean().item(),
                f"{name}_h_eff": effective_tilt(p_s, p_a, paths, -h, 3 * h),
                f"{name}_loss_gain": gain,
                f"{name}_loss_gain_max": gain_max,
                f"{name}_gain_fraction": gain / gain_max if gain_max > 0 else float("nan"),
                f"{name}_tv_rho": total_variation(p_s, rho, paths).mean().item(),
                f"{name}_reward": expected_reward(p_s, paths).mean().item(),
                f"{name}_target_reward": expected_reward(target, paths).mean().item(),
                f"{name}_rho_reward": expected_reward(rho, paths).mean().item(),
                f"{name}_valid": 1 - p_s.invalid.mean().item(),
                f"{name}_target_valid": 1 - target.invalid.mean().item(),
            }
        self.records.append(row)


def teacher_laws(
    teacher: DiffusionLM, task: MazeTask, base: dict[str, PathLaw], cfg: DTMConfig, study: FitStudyConfig
) -> dict[str, TeacherLaws]:
    """The teacher's laws on every maze set of ``base``, with ``invalid_samples`` draws per maze (seeded by the
    run's seed, so every variant of a seed draws the same ones from the same teacher)."""
    generator = torch.Generator().manual_seed(cfg.seed + 7)
    out = {}
    for name, base_law in base.items():
        paths = base_law.paths
        prompts = paths.prompts
        repeated = torch.arange(len(prompts)).repeat_interleave(study.invalid_samples)
        drawn = rollout(teacher, prompts.select(repeated), cfg.sampling, generator)
        invalid = task.reward(drawn, [prompts.meta[i] for i in repeated.tolist()]) == 0
        responses = Responses(prompts, drawn[invalid], repeated[invalid])
        out[name] = TeacherLaws(
            path_law(teacher, paths, cfg.sampling), responses, sequence_law(teacher, responses, cfg.sampling)
        )
    return out


def run_seed(seed: int, study: FitStudyConfig, out: Path, progress: bool) -> list[dict[str, Any]]:
    """One seed: its base model (pretrained here unless given), then every variant's DTM run, watched by a
    :class:`FitMonitor`. Returns one result per variant."""
    seed_dir = out / f"seed{seed}"
    base_path = study.base_path(seed) or seed_dir / "base" / "model"
    if study.base_path(seed) is None:
        pretrain(study.pretrain_config(seed, seed_dir / "base"), progress=progress)
    first = study.dtm_config(study.variant_names[0], seed, base_path, seed_dir)
    task = MazeTask(**first.task_options)
    model = load_model(base_path)
    start = time.perf_counter()
    base = {
        "train": path_law(model, maze_paths(task, distinct_mazes(task, study.train_mazes, "train")), first.sampling),
        "heldout": path_law(model, maze_paths(task, distinct_mazes(task, study.heldout_mazes, "test")), first.sampling),
    }
    first_teacher = teacher_laws(model, task, base, first, study)
    shared_seconds = time.perf_counter() - start
    results = []
    for variant in study.variant_names:
        cfg = study.dtm_config(variant, seed, base_path, seed_dir / re.sub(r"[^A-Za-z0-9.=-]+", "_", variant))
        monitor = FitMonitor(task, cfg, study, base, first_teacher, variant)
        trainer = DTMTrainer(cfg, model=load_model(base_path), task=task, progress=progress)
        start = time.perf_counter()
        trainer.train(callback=monitor)
        wall = time.perf_counter() - start - monitor.seconds
        results.append(
            {
                "variant": variant,
                "seed": seed,
                "train_seconds": wall,
                "measure_seconds": monitor.seconds + shared_seconds,
                "rollouts": trainer.state.rollouts,
                "records": monitor.records,
            }
        )
        if progress:
            last = monitor.records[-1]
            tqdm.write(
                f"{variant} seed {seed}: held-out TV to rho_a {last['heldout_tv_rho']:.3f}, reward "
                f"{last['heldout_reward']:.3f} (rho_a: {last['heldout_rho_reward']:.3f}), {wall:.0f} s training"
            )
    return results


def run_fit_study(cfg: FitStudyConfig, *, overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Every variant on every seed; write ``results.json``, ``fit.csv``, ``report.md`` and ``fit_vs_step.png``;
    return the summary."""
    out = Path(cfg.output_dir)
    for seed in cfg.seeds:  # every setting and given model is checked before anything is trained
        base = cfg.base_path(seed)
        for variant in cfg.variant_names:
            cfg.dtm_config(variant, seed, base or out / "base", out / "dtm")
        if base is None:
            cfg.pretrain_config(seed, out / "base")
        elif not (base / "config.json").is_file():
            raise ConfigError(f"base_model: no model checkpoint at {base} (seed {seed})")
    out = prepare_run_dir(cfg.output_dir, overwrite=overwrite, resumable=False)
    save_config(cfg, out / "fit.yaml")
    per_seed = map_seeds(run_seed, cfg.seeds, cfg, out, progress and cfg.workers == 1, workers=cfg.workers)
    runs = [result for results in per_seed for result in results]
    summary = summarize(runs)
    write_outputs(out, cfg, runs, summary)
    return summary


SUMMARY_KEYS = (
    "tv_target",
    "tv_start",
    "h_eff",
    "gain_fraction",
    "tv_rho",
    "reward",
    "rho_reward",
    "valid",
    "teacher_valid",
    "target_valid",
)


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per variant, mean and std over seeds: at every phase end (each key of SUMMARY_KEYS on both maze sets, and
    h_eff / h), and for the final model (TV to rho_a, reward, reward / E_rho[r], training time, rollouts)."""
    summary: dict[str, Any] = {}
    for variant in dict.fromkeys(run["variant"] for run in runs):
        group = [run for run in runs if run["variant"] == variant]
        ends = [[r for r in run["records"] if r["in_phase"] and _is_phase_end(r, run)] for run in group]
        starts = [[r for r in run["records"] if not r["in_phase"]] for run in group]
        phases = []
        for i in range(min(len(e) for e in ends)):
            rows = [e[i] | _teacher_valid(s[i]) for e, s in zip(ends, starts, strict=True)]
            entry: dict[str, Any] = {"phase": i, "a": rows[0]["a"], "h": rows[0]["h"], "step": rows[0]["step"]}
            entry["states"] = rows[0]["states"]
            for split in SPLITS:
                for key in SUMMARY_KEYS:
                    entry[f"{split}_{key}"] = mean_std([r[f"{split}_{key}"] for r in rows])
                entry[f"{split}_h_eff_ratio"] = mean_std([r[f"{split}_h_eff"] / r["h"] for r in rows])
            phases.append(entry)
        finals = [e[-1] for e in ends]
        final = {
            f"{split}_{key}": mean_std([r[f"{split}_{key}"] for r in finals])
            for split in SPLITS
            for key in ("tv_rho", "reward", "rho_reward")
        }
        for split in SPLITS:
            final[f"{split}_reward_ratio"] = mean_std([r[f"{split}_reward"] / r[f"{split}_rho_reward"] for r in finals])
        final["train_seconds"] = mean_std([run["train_seconds"] for run in group])
        final["rollouts"] = mean_std([float(run["rollouts"]) for run in group])
        summary[variant] = {"seeds": [run["seed"] for run in group], "phases": phases, "final": final}
    return summary


def _teacher_valid(start: dict[str, Any]) -> dict[str, float]:
    """The teacher's valid-path mass, read from its phase's start record (where the student is the teacher)."""
    return {f"{split}_teacher_valid": start[f"{split}_valid"] for split in SPLITS}


def _is_phase_end(record: dict[str, Any], run: dict[str, Any]) -> bool:
    """Whether a measurement was taken at the end of its phase (the run's largest in-phase index)."""
    return record["in_phase"] == max(r["in_phase"] for r in run["records"])


def _cell(entry: dict[str, float]) -> str:
    return f"{entry['mean']:.3f} ± {entry['std']:.3f}"


def phase_table(entry: dict[str, Any]) -> str:
    """One variant's per-phase fit on the held-out mazes, mean ± std over seeds."""
    lines = [
        "| phase | a -> a + h | TV(teacher, target) | TV(student, target) | h_eff / h | loss gain / max | "
        "TV to rho_{a+h} | reward | E_rho[r] |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in entry["phases"]:
        cells = [_cell(p[f"heldout_{k}"]) for k in ("tv_start", "tv_target", "h_eff_ratio", "gain_fraction")]
        cells += [_cell(p[f"heldout_{k}"]) for k in ("tv_rho", "reward", "rho_reward")]
        lines.append(f"| {p['phase']} | {p['a']:g} -> {p['a'] + p['h']:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def variant_table(summary: dict[str, Any], split: str = "heldout") -> str:
    """One row per variant (mean ± std over seeds, on the ``split`` mazes): the first phase's fit, and the final
    model's distance to rho_a and reward."""
    lines = [
        "| variant | TV(teacher, target) | TV(student, target) | h_eff / h | loss gain / max | valid: teacher | "
        "valid: student | valid: target | final TV to rho_a | reward / E_rho[r] | training (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for variant, entry in summary.items():
        first, final = entry["phases"][0], entry["final"]
        keys = ("tv_start", "tv_target", "h_eff_ratio", "gain_fraction", "teacher_valid", "valid", "target_valid")
        cells = [_cell(first[f"{split}_{k}"]) for k in keys]
        cells += [_cell(final[f"{split}_tv_rho"]), _cell(final[f"{split}_reward_ratio"])]
        cells.append(f"{final['train_seconds']['mean']:.0f}")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def final_table(summary: dict[str, Any]) -> str:
    """The final model of every variant against the run's overall target rho_{a_end}, on both maze sets."""
    lines = [
        "| variant | mazes | TV to rho_a | reward | E_rho[r] | reward / E_rho[r] |",
        "|---|---|---|---|---|---|",
    ]
    for variant, entry in summary.items():
        for split in SPLITS:
            cells = [_cell(entry["final"][f"{split}_{k}"]) for k in ("tv_rho", "reward", "rho_reward", "reward_ratio")]
            lines.append(f"| {variant} | {split} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_tables(summary: dict[str, Any]) -> str:
    parts = [variant_table(summary), "", final_table(summary)]
    for variant, entry in summary.items():
        parts += ["", f"**{variant}** (held-out mazes, per phase):", "", phase_table(entry)]
    return "\n".join(parts)


def write_outputs(out: Path, cfg: FitStudyConfig, runs: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    (out / "results.json").write_text(json.dumps({"runs": runs, "summary": summary}, indent=2))
    rows = [r for run in runs for r in run["records"]]
    with open(out / "fit.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot_fit(out / "fit_vs_step.png", runs)
    plot_reach_vs_draws(out / "fit_vs_draws.png", runs)
    report = [
        "# Does each DTM phase reach its target?",
        "",
        f"Seeds {cfg.seeds} (each with its own base model unless one is given); exact laws on {cfg.train_mazes} "
        f"training and {cfg.heldout_mazes} held-out mazes. Held-out mazes below, mean ± std over seeds; every "
        "number in results.json; the settings in fit.yaml.",
        "",
        markdown_tables(summary),
        "",
        "![fit vs step](fit_vs_step.png)",
        "![fit vs draws per rollout](fit_vs_draws.png)",
        "",
    ]
    (out / "report.md").write_text("\n".join(report))


def plot_fit(path: Path, runs: list[dict[str, Any]]) -> None:
    """Held-out TV to the phase's target and h_eff / h against optimizer steps, one line per run."""
    fig, (left, right) = new_axes((11, 4), ncols=2)
    for run in runs:
        steps = [r["step"] for r in run["records"]]
        label = f"{run['variant']} seed {run['seed']}"
        left.plot(steps, [r["heldout_tv_target"] for r in run["records"]], marker=".", label=label)
        right.plot(steps, [r["heldout_h_eff"] / r["h"] for r in run["records"]], marker=".")
    left.set(xlabel="optimizer step", ylabel="TV(model, phase target)", title="Held-out distance to the phase target")
    right.axhline(1.0, color="gray", linewidth=0.8, linestyle="--")
    right.set(xlabel="optimizer step", ylabel="h_eff / h", title="Effective tilt reached (1 = the phase's h)")
    left.legend(fontsize=6)
    save_figure(fig, path)


def first_phase_end(run: dict[str, Any]) -> dict[str, Any]:
    """The record that ends a run's first phase (phase 0, measured after its last optimizer step)."""
    return max((r for r in run["records"] if r["phase"] == 0), key=lambda r: r["in_phase"])


def plot_reach_vs_draws(path: Path, runs: list[dict[str, Any]]) -> None:
    """h_eff / h at the end of the first phase against the masked states drawn per rollout in it (states / rollouts),
    mean ± std over seeds per variant, held-out and training mazes: at fixed rollouts, how far more optimisation of
    the same data takes a phase."""
    fig, ax = new_axes((6, 4))
    for split, marker in (("heldout", "o"), ("train", "s")):
        by_variant: dict[str, list[dict[str, Any]]] = {}
        for run in runs:
            by_variant.setdefault(run["variant"], []).append(first_phase_end(run))
        points = sorted(
            (
                (
                    statistics.fmean(r["states"] / r["rollouts"] for r in ends),
                    mean_std(r[f"{split}_h_eff"] / r["h"] for r in ends),
                )
                for ends in by_variant.values()
            ),
            key=lambda point: point[0],  # variants may tie on draws per rollout
        )
        ax.errorbar(
            [x for x, _ in points],
            [y["mean"] for _, y in points],
            yerr=[y["std"] for _, y in points],
            marker=marker,
            capsize=3,
            label=f"{split} mazes",
        )
    ax.axhline(1.0, color="gray", linewidth=0.8, linestyle="--")
    ax.set(
        xscale="log",
        xlabel="masked states per rollout in the phase",
        ylabel="h_eff / h (first phase, mean ± std over seeds)",
        title="Effective tilt against draws per rollout",
    )
    ax.legend(fontsize=7)
    save_figure(fig, path)
